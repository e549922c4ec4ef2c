//! Group commit for sled: one thread flushes, every writer waiting at the time shares it.
//!
//! sled's own `flush_async` can leave futures unwoken when several are polled at once (sled
//! issues 1241 and 1308, still open in 0.34.7): under 50 concurrent creates the server hung.
//! So writers do not call it. Each takes a *ticket* after its write and waits until a flush
//! that began after the ticket was taken has finished:
//!
//! ```text
//!   writer:   write ─▶ ticket = ++requested ─▶ wake the thread ─▶ wait until done >= ticket
//!   thread:   loop { target = requested; db.flush(); done = target; wake the writers }
//! ```
//!
//! Invariant: a ticket at or below `target` was taken before the flush began, so the write it
//! follows is in that flush. Concurrent writers therefore share one fsync, as a write-ahead
//! log's group commit does, and a writer never waits for more than two flushes.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::watch;

use super::StoreError;

/// What the flush thread has finished: the highest ticket covered, and the error of that
/// flush if it failed.
type Done = (u64, Option<Arc<str>>);

#[derive(Default)]
struct Requests {
    requested: u64,
    stopping: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
}

/// The handle writers use; dropping the last one stops the thread.
pub struct Flusher {
    shared: Arc<Shared>,
    done: watch::Receiver<Done>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

impl Flusher {
    /// Starts the flush thread for `db`.
    pub fn start(db: sled::Db) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
        });
        let (tx, rx) = watch::channel((0, None));
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flush_loop(&db, &thread_shared, &tx))?;
        Ok(Flusher {
            shared,
            done: rx,
            thread: Some(thread),
        })
    }

    /// Returns once everything written before the call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let ticket = {
            let mut requests = self.lock();
            requests.requested += 1;
            requests.requested
        };
        self.shared.wake.notify_one();
        let mut done = self.done.clone();
        let result = done.wait_for(|(covered, _)| *covered >= ticket).await;
        match result {
            Ok(state) => match &state.1 {
                Some(err) => Err(StoreError::Flush(err.to_string())),
                None => Ok(()),
            },
            Err(_) => Err(StoreError::Flush("the flush thread is gone".into())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Flusher {
    /// Stops the thread and waits for it (at most one flush), so that its handle on the
    /// database is gone and the directory can be opened again at once.
    fn drop(&mut self) {
        self.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sled flush thread panicked");
        }
    }
}

fn flush_loop(db: &sled::Db, shared: &Shared, done: &watch::Sender<Done>) {
    let mut covered = 0;
    loop {
        let target = {
            let mut requests = shared
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while requests.requested == covered && !requests.stopping {
                requests = shared
                    .wake
                    .wait(requests)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if requests.requested == covered {
                return;
            }
            requests.requested
        };
        let error = db.flush().err().map(|e| Arc::from(e.to_string()));
        if let Some(err) = &error {
            tracing::error!(%err, "sled flush failed");
        }
        covered = target;
        done.send_replace((covered, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_flushes_all_complete() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let flusher = Arc::new(Flusher::start(db.clone()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (db, flusher) = (db.clone(), flusher.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
                flusher.flush().await
            }));
        }
        let all = async {
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("every flush completes");
    }
}

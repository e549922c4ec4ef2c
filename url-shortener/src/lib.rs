//! A URL shortener: the classic system-design case study as a real service.
//!
//! | module | what it holds |
//! |---|---|
//! | [`id`] | ids leased in blocks from a counter, scrambled by a Feistel permutation, spelt in base62 |
//! | [`target`] | which URLs a link may point to |
//! | [`alias`] | which custom codes a user may choose |

pub mod alias;
pub mod id;
pub mod target;

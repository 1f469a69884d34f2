//! The portable SQL helpers live in `faultline_core::sql` (the pages and the Web API use them
//! too); worker modules keep calling them as `crate::sql`.

pub use faultline_core::sql::*;

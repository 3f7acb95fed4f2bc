//! drover's decisions: the domain model, the JDL, the typed messages and the pure
//! reconcilers. Nothing in this crate does I/O or reads the clock: it turns a
//! snapshot of the world into a list of actions, and `src/` carries them out.

pub mod dispatch;
pub mod fleet;
pub mod gc;
pub mod jdl;
pub mod jobs;
pub mod messages;
pub mod model;
pub mod records;

//! The scalar oracles every fast path is tested against: [`forward()`], the simplest correct
//! forward pass in f32, and [`gradients()`], backward through time in f64. Each owns its
//! scratch; neither shares code with the engine.

mod forward;
mod gradients;

pub use forward::{forward, sigmoid};
pub use gradients::gradients;

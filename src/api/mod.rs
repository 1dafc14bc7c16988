//! What a user *holds*: [`Lstm`](lstm::Lstm) and its options, the input of a pass, the
//! workspace, the training reserve, the upstream gradients and the gradients. Every input
//! is validated here before the engine runs.

pub(crate) mod input;
pub(crate) mod lstm;
pub(crate) mod options;
pub(crate) mod train;
pub(crate) mod wisdom;
pub(crate) mod workspace;

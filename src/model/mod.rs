//! What an LSTM *is*: the spec (sizes and cell options, validated once), the weights in the
//! crate's layout and every framework's convention, named tensors and `.safetensors`
//! files, the recurrent state, the error type, and where a time step sits in a caller's
//! buffer. Depends on nothing else of the crate.

pub(crate) mod alloc;
pub(crate) mod error;
pub(crate) mod layout;
pub(crate) mod spec;
pub(crate) mod state;
pub(crate) mod tensors;
pub(crate) mod weights;

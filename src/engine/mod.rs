//! How an LSTM *runs*: the execution context (kernels, pool, thread count), the planner,
//! the packed-sequence schedule, the weights packed for the kernels, the panel products,
//! and the forward and backward time loops.
//!
//! Engine functions take a context, packed cells, a plan and buffers, never the public
//! types; they trust their caller (the api) to have validated every shape.

pub(crate) mod aligned;
pub(crate) mod backward;
pub(crate) mod barrier;
pub(crate) mod context;
pub(crate) mod forward;
pub(crate) mod machine;
pub(crate) mod packed_cell;
pub(crate) mod panel_gemm;
pub(crate) mod partition;
pub(crate) mod plan;
pub(crate) mod pool;
pub(crate) mod schedule;
pub(crate) mod sgemm;
pub(crate) mod tape;

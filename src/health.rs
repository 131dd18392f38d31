//! The active health checker shared by both balancers.

//! Backends, their health state (rise/fall) and selection. Pure logic, no I/O.

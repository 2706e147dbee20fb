//! The tcp nukleus.

//! The ws nukleus.

//! The http nukleus.

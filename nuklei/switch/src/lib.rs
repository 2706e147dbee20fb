//! The switch nukleus.

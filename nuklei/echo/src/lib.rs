//! The echo nukleus.

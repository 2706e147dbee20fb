//! The tls nukleus.

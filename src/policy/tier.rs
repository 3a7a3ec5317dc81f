//! What one connection may make the server hold on its behalf. Every byte a client can
//! park in the server is bounded: the partial frame being read (`max_message_size`),
//! early envelopes waiting for a missing `seq` (`seq_window`, `seq_window_bytes`),
//! requests waiting or running (`max_in_flight`, `max_in_flight_bytes`) and replies
//! queued towards it (`max_outbound_bytes`). A connection starts with the small
//! "before sign-in" tier and moves to the configured tier once one of its requests ran
//! as a known principal (password or token sign-in, a valid per-message token, guest).

use crate::config::Limits;
use crate::error::OpenCoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub signed_in: bool,
    pub max_message_size: usize,
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub seq_window: usize,
    pub seq_window_bytes: usize,
    pub max_outbound_bytes: usize,
}

impl Tier {
    pub fn signed_in(limits: &Limits) -> Tier {
        Tier {
            signed_in: true,
            max_message_size: limits.max_message_size,
            max_in_flight: limits.max_in_flight,
            max_in_flight_bytes: limits.max_in_flight_bytes,
            seq_window: limits.seq_window,
            seq_window_bytes: limits.seq_window_bytes,
            max_outbound_bytes: limits.max_outbound_bytes,
        }
    }

    /// Never larger than the signed-in tier, whatever the flags say.
    pub fn before_signin(limits: &Limits) -> Tier {
        let full = Tier::signed_in(limits);
        Tier {
            signed_in: false,
            max_message_size: limits.unauth_max_message_size.min(full.max_message_size),
            max_in_flight: limits.unauth_max_in_flight.min(full.max_in_flight),
            max_in_flight_bytes: limits
                .unauth_max_in_flight_bytes
                .min(full.max_in_flight_bytes),
            seq_window: limits.unauth_seq_window.min(full.seq_window),
            seq_window_bytes: limits.unauth_seq_window_bytes.min(full.seq_window_bytes),
            max_outbound_bytes: limits
                .unauth_max_outbound_bytes
                .min(full.max_outbound_bytes),
        }
    }

    /// Whether a connection of this tier may start one more request of `bytes`, given
    /// what it already has in flight. The error names the limit that was hit; the
    /// before-sign-in variants only when that tier is what made the difference.
    pub fn admit_request(
        &self,
        limits: &Limits,
        in_flight: usize,
        in_flight_bytes: usize,
        bytes: usize,
    ) -> Result<(), OpenCoreError> {
        if in_flight >= self.max_in_flight {
            return Err(
                if !self.signed_in && self.max_in_flight < limits.max_in_flight {
                    OpenCoreError::TooManyInFlightBeforeSignin(self.max_in_flight)
                } else {
                    OpenCoreError::TooManyInFlight(self.max_in_flight)
                },
            );
        }
        if in_flight_bytes.saturating_add(bytes) > self.max_in_flight_bytes {
            return Err(OpenCoreError::TooManyInFlightBytes(
                self.max_in_flight_bytes,
            ));
        }
        Ok(())
    }

    /// The error for an envelope over this tier's size limit.
    pub fn too_large(&self, limits: &Limits, size: usize) -> OpenCoreError {
        if !self.signed_in && self.max_message_size < limits.max_message_size {
            OpenCoreError::MessageTooLargeBeforeSignin {
                size,
                limit: self.max_message_size,
            }
        } else {
            OpenCoreError::MessageTooLarge {
                size,
                limit: self.max_message_size,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_signin_is_never_larger_than_signed_in() {
        let limits = Limits {
            max_in_flight: 2,
            max_message_size: 1000,
            ..Limits::default()
        };
        let tier = Tier::before_signin(&limits);
        assert_eq!(tier.max_in_flight, 2);
        assert_eq!(tier.max_message_size, 1000);
        assert!(!tier.signed_in);
    }

    #[test]
    fn defaults_are_small_before_signin() {
        let limits = Limits::default();
        let tier = Tier::before_signin(&limits);
        assert_eq!(tier.max_message_size, 1024 * 1024);
        assert_eq!(tier.max_in_flight, 8);
        assert!(tier.seq_window_bytes <= 256 * 1024);
        assert!(Tier::signed_in(&limits).max_message_size > tier.max_message_size);
    }

    #[test]
    fn in_flight_counts_and_bytes() {
        let limits = Limits::default();
        let tier = Tier::before_signin(&limits);
        assert!(tier.admit_request(&limits, 7, 0, 10).is_ok());
        assert_eq!(
            tier.admit_request(&limits, 8, 0, 10),
            Err(OpenCoreError::TooManyInFlightBeforeSignin(8))
        );
        assert_eq!(
            tier.admit_request(&limits, 1, tier.max_in_flight_bytes - 5, 10),
            Err(OpenCoreError::TooManyInFlightBytes(
                tier.max_in_flight_bytes
            ))
        );
    }
}

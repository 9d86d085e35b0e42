//! Per-client-IP limits on call creation and sign-in attempts (`governor`).

use sfu::ErrorCode;
use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::agents::ApiError;

pub struct Limits {
    calls: DefaultKeyedRateLimiter<IpAddr>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    /// `calls_per_minute` call requests and `logins_per_minute` sign-in
    /// attempts per client IP, each allowed in a burst.
    pub fn new(calls_per_minute: u32, logins_per_minute: u32) -> Limits {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        Limits {
            calls: RateLimiter::keyed(quota(calls_per_minute)),
            logins: RateLimiter::keyed(quota(logins_per_minute)),
        }
    }

    pub fn call_creation(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.calls
            .check_key(&ip)
            .map_err(|_| too_many("too many call requests from your address; try again in a minute"))
    }

    pub fn login_attempt(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.logins.check_key(&ip).map_err(|_| too_many("too many sign-in attempts; wait a minute and try again"))
    }

    /// Forgets idle clients so the maps stay small; run periodically.
    pub fn forget_idle(&self) {
        self.calls.retain_recent();
        self.logins.retain_recent();
    }
}

fn too_many(message: &str) -> ApiError {
    ApiError(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message.into())
}

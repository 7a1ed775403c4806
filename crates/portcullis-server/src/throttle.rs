//! Which throttle counters a login or a signup spends. The rule itself (admission
//! before hashing, doubling delays, what a success gives back) is the library's
//! `portcullis::throttle`; the counters live in the store, so every instance on one
//! database shares them.
//!
//! A login from a device that signed in to this account before (it carries a device
//! credential, see `device.rs`) spends only that device's counter. Any other login
//! spends the account's counter and the client address's counter. So an attacker's
//! guesses, which never carry the owner's device credential, can slow down anonymous
//! logins to the account but never the owner's known devices.

use portcullis::clock::secs;
use std::net::IpAddr;

use portcullis::throttle::{Attempt, Budget, Lane};
use portcullis_store::TokenHash;

use crate::config::Config;

/// The budgets, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    account: Budget,
    address: Budget,
    /// An IPv6 /48 (a site's usual allocation): 16 times an address's budget, so one
    /// site cannot multiply its budget by taking addresses in 65,536 /64s.
    site: Budget,
    signup: Budget,
}

impl Throttle {
    /// Budgets: `login_failures_before_delay` per account and per device, four times
    /// that per address, `signups_before_delay` per address; delays doubling up to
    /// `login_max_delay` and `signup_max_delay`.
    pub fn new(config: &Config) -> Throttle {
        let free = config.login_failures_before_delay;
        let max = secs(config.login_max_delay);
        Throttle {
            account: Budget::new(free, max),
            address: Budget::new(free.saturating_mul(4), max),
            site: Budget::new(free.saturating_mul(64), max),
            signup: Budget::new(config.signups_before_delay, secs(config.signup_max_delay)),
        }
    }

    /// The counters a login attempt on `account` spends: the known device's alone,
    /// or the account's and the address's.
    pub fn login(
        &self,
        account: &str,
        address: IpAddr,
        device: Option<&TokenHash>,
    ) -> Vec<Attempt> {
        match device {
            Some(device) => vec![Attempt {
                key: format!("device:{}", hex(&device.0[..16])),
                budget: self.account,
                lane: Lane::Device,
            }],
            None => {
                let mut attempts = vec![
                    Attempt {
                        key: format!("account:{account}"),
                        budget: self.account,
                        lane: Lane::Account,
                    },
                    Attempt {
                        key: format!("address:{}", address_key(address)),
                        budget: self.address,
                        lane: Lane::Address,
                    },
                ];
                if let IpAddr::V6(v6) = address {
                    let s = v6.segments();
                    attempts.push(Attempt {
                        key: format!("site:{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]),
                        budget: self.site,
                        lane: Lane::Address,
                    });
                }
                attempts
            }
        }
    }

    /// The counter a signup from `address` spends.
    pub fn signup(&self, address: IpAddr) -> Vec<Attempt> {
        vec![Attempt {
            key: format!("signup:{}", address_key(address)),
            budget: self.signup,
            lane: Lane::Spend,
        }]
    }

    /// How long a counter can matter after its last attempt (for pruning).
    pub fn idle(&self) -> i64 {
        [self.account, self.address, self.site, self.signup]
            .iter()
            .map(|b| b.reset_after)
            .max()
            .unwrap_or(0)
    }

    /// The login budget of one account from unknown devices.
    pub fn account_budget(&self) -> Budget {
        self.account
    }
}

/// IPv6 clients are counted by their /64: one subscriber usually holds a whole /64
/// and could otherwise take a fresh address for every guess.
fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_device_spends_only_its_own_counter() {
        let t = Throttle::new(&Config::defaults().unwrap());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let anonymous = t.login("alice", ip, None);
        assert_eq!(
            anonymous.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
            ["account:alice", "address:192.0.2.1"]
        );
        assert_eq!(anonymous[1].budget.free, 20);
        let known = t.login("alice", ip, Some(&TokenHash([7; 32])));
        assert_eq!(known.len(), 1);
        assert_eq!(known[0].lane, Lane::Device);
        assert!(known[0].key.starts_with("device:0707"));
    }

    /// Security review: a /48 holder had 65,536 /64 address budgets.
    #[test]
    fn ipv6_clients_also_spend_their_48s_budget() {
        let t = Throttle::new(&Config::defaults().unwrap());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        let (x, y) = (t.login("alice", a, None), t.login("alice", b, None));
        assert_ne!(x[1].key, y[1].key, "different /64s");
        assert_eq!(x[2].key, y[2].key, "one /48");
        assert_eq!(x[2].key, "site:2001:db8:1::/48");
        assert_eq!(x[2].budget.free, 320);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.login("alice", v4, None).len(), 2);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
    }
}

//! Which throttle counters a login or a signup spends. The rule itself (admission
//! before hashing, doubling delays, what a success gives back) is the library's
//! `portcullis::throttle`; the counters live in the store, so every instance on one
//! database shares them.
//!
//! A login from a device that signed in to this account before (it carries a device
//! credential, see `device.rs`) spends only that device's counter. Any other login
//! spends three: the account's counter *at the client's address* (an IPv6 /64), the
//! account's counter across all addresses, and the address's own counter (across
//! accounts). So an attacker's guesses, which never carry the owner's device
//! credential, never slow the owner's known devices; and an attacker at one address
//! (or a few) runs down the account's budget at that address only, not the owner's
//! new device elsewhere (issue 28, finding 5).
//!
//! The account-wide counter is the backstop against guesses spread over many
//! addresses: eight times the free attempts of one address, with delays up to a
//! quarter of `login_max_delay`. One address, held by its own counter to one guess a
//! `login_max_delay` at most, keeps the account-wide counter blocked a quarter of the
//! time at most, so the owner's new device gets in after a wait of at most a quarter of
//! `login_max_delay`. An attacker at four or more addresses at once can still keep it
//! blocked (docs/security-model.md, G20); the account-wide counter holds what all of
//! them together get.

use portcullis::clock::secs;
use std::net::IpAddr;

use portcullis::throttle::{Attempt, Budget, Lane};
use portcullis_store::TokenHash;

use crate::config::Config;

/// The budgets, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    /// One account, from one address's unknown devices (or one known device).
    account: Budget,
    /// One account, from every address together.
    account_wide: Budget,
    address: Budget,
    /// An IPv6 /48 (a site's usual allocation): 16 times an address's budget, so one
    /// site cannot multiply its budget by taking addresses in 65,536 /64s.
    site: Budget,
    signup: Budget,
    /// Mail one account or address is sent (reset links, resent confirmations): three
    /// at once, then doubling waits up to an hour.
    mail_to: Budget,
    /// Mail-sending requests from one client address: ten, then waits up to an hour.
    mail_from: Budget,
}

impl Throttle {
    /// Budgets: `login_failures_before_delay` per account at one address and per
    /// device, eight times that per account across addresses (delays up to a quarter of
    /// `login_max_delay`), four times that per address, `signups_before_delay` per
    /// address; delays doubling up to `login_max_delay` and `signup_max_delay`.
    pub fn new(config: &Config) -> Throttle {
        let free = config.login_failures_before_delay;
        let max = secs(config.login_max_delay);
        Throttle {
            account: Budget::new(free, max),
            account_wide: Budget::new(free.saturating_mul(8), (max / 4).max(1)),
            address: Budget::new(free.saturating_mul(4), max),
            site: Budget::new(free.saturating_mul(64), max),
            signup: Budget::new(config.signups_before_delay, secs(config.signup_max_delay)),
            mail_to: Budget::new(3, 3600),
            mail_from: Budget::new(10, 3600),
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
                    // The address first and a space after it: an address holds no
                    // space, and no account name can make this key another's.
                    Attempt {
                        key: format!("account-at:{} {account}", address_key(address)),
                        budget: self.account,
                        lane: Lane::Account,
                    },
                    Attempt {
                        key: format!("account:{account}"),
                        budget: self.account_wide,
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

    /// The counters a WebAuthn sign-in start from `address` spends (each start keeps a
    /// ceremony for five minutes): the address's login budget, given back when the
    /// sign-in succeeds.
    pub fn ceremony(&self, address: IpAddr) -> Vec<Attempt> {
        vec![Attempt {
            key: format!("passkey-from:{}", address_key(address)),
            budget: self.address,
            lane: Lane::Address,
        }]
    }

    /// The counter a signup from `address` spends.
    pub fn signup(&self, address: IpAddr) -> Vec<Attempt> {
        vec![Attempt {
            key: format!("signup:{}", address_key(address)),
            budget: self.signup,
            lane: Lane::Spend,
        }]
    }

    /// The counters a request that sends mail spends: the client address's, and the
    /// recipient's (`to`: what the request named, an address or an account, normalised,
    /// so that the counter is the same whether or not an account matches). Every
    /// request counts; none is given back.
    pub fn mail(&self, address: IpAddr, to: &str) -> Vec<Attempt> {
        vec![
            Attempt {
                key: format!("mail-to:{to}"),
                budget: self.mail_to,
                lane: Lane::Spend,
            },
            Attempt {
                key: format!("mail-from:{}", address_key(address)),
                budget: self.mail_from,
                lane: Lane::Spend,
            },
        ]
    }

    /// The counter of the mail one account is sent, whatever named it (its address or
    /// its username): what a reset request spends once it found the account.
    pub fn account_mail(&self, user_id: &str) -> Vec<Attempt> {
        vec![Attempt {
            key: format!("mail-to:{}", account_key(user_id)),
            budget: self.mail_to,
            lane: Lane::Spend,
        }]
    }

    /// [`Throttle::mail`] for a signed-in person's own account (a confirmation sent
    /// again, an address change): the account's counter and the address's.
    pub fn mail_to_account(&self, address: IpAddr, user_id: &str) -> Vec<Attempt> {
        self.mail(address, &account_key(user_id))
    }

    /// The counter a password reset (a new password hashed) from `address` spends.
    pub fn reset(&self, address: IpAddr) -> Vec<Attempt> {
        vec![Attempt {
            key: format!("reset-from:{}", address_key(address)),
            budget: self.mail_from,
            lane: Lane::Spend,
        }]
    }

    /// How long a counter can matter after its last attempt (for pruning).
    pub fn idle(&self) -> i64 {
        [
            self.account,
            self.account_wide,
            self.address,
            self.site,
            self.signup,
            self.mail_to,
            self.mail_from,
        ]
        .iter()
        .map(|b| b.reset_after)
        .max()
        .unwrap_or(0)
    }

    /// The login budget of one account from one address's unknown devices.
    pub fn account_budget(&self) -> Budget {
        self.account
    }

    /// The login budget of one account from every address's unknown devices together.
    pub fn account_wide_budget(&self) -> Budget {
        self.account_wide
    }
}

/// IPv6 clients are counted by their /64: one subscriber usually holds a whole /64
/// and could otherwise take a fresh address for every guess.
/// What names an account in the mail counters: one budget for all mail to it.
fn account_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
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
            [
                "account-at:192.0.2.1 alice",
                "account:alice",
                "address:192.0.2.1"
            ]
        );
        // Per account at an address as before; across addresses eight times the free
        // attempts, delays up to a quarter of a minute; per address across accounts 20.
        assert_eq!(
            (anonymous[0].budget.free, anonymous[0].budget.max_delay),
            (5, 60)
        );
        assert_eq!(
            (anonymous[1].budget.free, anonymous[1].budget.max_delay),
            (40, 15)
        );
        assert_eq!(anonymous[2].budget.free, 20);
        // No account name makes its keys another account's at some address.
        let tricky = t.login("192.0.2.1 alice", ip, None);
        for k in tricky.iter().filter(|a| a.lane == Lane::Account) {
            assert!(anonymous.iter().all(|a| a.key != k.key), "{}", k.key);
        }
        let known = t.login("alice", ip, Some(&TokenHash([7; 32])));
        assert_eq!(known.len(), 1);
        assert_eq!(known[0].lane, Lane::Device);
        assert!(known[0].key.starts_with("device:0707"));
    }

    /// The figures docs/http-api.md gives: what one address gets at an account in an
    /// hour, and what many addresses together get.
    #[test]
    fn the_documented_guess_rates_hold() {
        let t = Throttle::new(&Config::defaults().unwrap());
        assert_eq!(t.account_budget().most_in(180), 12);
        assert_eq!(t.account_budget().most_in(3600), 69);
        assert_eq!(t.account_wide_budget().most_in(3600), 282);
    }

    /// Security review: a /48 holder had 65,536 /64 address budgets.
    #[test]
    fn ipv6_clients_also_spend_their_48s_budget() {
        let t = Throttle::new(&Config::defaults().unwrap());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        let (x, y) = (t.login("alice", a, None), t.login("alice", b, None));
        assert_ne!(x[0].key, y[0].key, "the account at different /64s");
        assert_eq!(x[1].key, y[1].key, "the account across addresses");
        assert_ne!(x[2].key, y[2].key, "different /64s");
        assert_eq!(x[3].key, y[3].key, "one /48");
        assert_eq!(x[3].key, "site:2001:db8:1::/48");
        assert_eq!(x[3].budget.free, 320);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.login("alice", v4, None).len(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
    }
}

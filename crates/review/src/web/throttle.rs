//! Login throttling: temporary lock-outs per account and per client address.
//!
//! Every login attempt counts against the account name it tries and the address it comes
//! from *before* its password is checked, and a successful one is refunded — so parallel
//! guessers cannot all slip in before the first failure is recorded. `max_failures`
//! attempts within `window` lock that account (or address) for a back-off that starts at
//! `lockout` and doubles with each further lock-out, up to `lockout_max`. While locked,
//! logins are refused with 429 before any password is checked (so a locked attacker also
//! costs no argon2 time).
//!
//! Not letting an attacker keep the real user out (the trade-off chosen):
//! * a lock-out always ends at the time it was given — attempts during it neither count
//!   nor extend it — so an account is never locked longer than `lockout_max` at a time,
//!   and an attacker gets at most `max_failures` guesses per lock-out period;
//! * an account lock-out does not apply to addresses that have logged in to that account
//!   before (since the server started): the user at their usual workstation still gets in
//!   while someone elsewhere is guessing. That address still has its own per-address limit;
//! * the back-off level falls back to the first step after a quiet `window`.
//!
//! The state is in memory: a restart forgets failures, lock-outs and known addresses.
//! Behind a reverse proxy every client has the proxy's address, so the per-address limit
//! applies to all users together; set it to 0 (off) there, or high.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of the login throttle (`review serve --login-*`).
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed logins per account name within `window` that lock it; 0 turns the limit off.
    pub max_failures_per_account: u32,
    /// Failed logins per client address within `window` that lock it; 0 turns the limit off.
    pub max_failures_per_address: u32,
    /// How far back failures count.
    pub window: Duration,
    /// The first lock-out; each further one doubles it.
    pub lockout: Duration,
    /// The longest lock-out.
    pub lockout_max: Duration,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(15 * 60),
        }
    }
}

/// What a lock-out covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One account name.
    Account,
    /// One client address.
    Address,
}

impl Scope {
    /// The scope's name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

/// A lock-out: what is locked and for how much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// What is locked.
    pub scope: Scope,
    /// How much longer.
    pub remaining: Duration,
}

impl Lockout {
    /// `remaining` in whole seconds, rounded up (for `Retry-After`), at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.remaining.as_secs();
        if self.remaining.subsec_nanos() > 0 {
            s + 1
        } else {
            s.max(1)
        }
    }
}

/// A lock-out an attempt started, with what it replaced (to undo it if the attempt
/// turns out to be the right password).
#[derive(Debug, Clone, Copy)]
struct Started {
    lockout: Lockout,
    until: Instant,
    previous_failures: u32,
    previous_lockouts: u32,
    previous_until: Option<Instant>,
}

/// Failures and lock-out state of one account or address.
#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    window_start: Instant,
    last_failure: Instant,
    lockouts: u32,
    locked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            window_start: now,
            last_failure: now,
            lockouts: 0,
            locked_until: None,
        }
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts an attempt (not while locked); returns the lock-out it starts when it
    /// reaches `max`.
    fn count(&mut self, now: Instant, max: u32, scope: Scope, limits: &LoginLimits) -> Option<Started> {
        if self.remaining(now).is_some() {
            return None;
        }
        let quiet_since = self
            .locked_until
            .map_or(self.last_failure, |u| u.max(self.last_failure));
        if now.saturating_duration_since(quiet_since) > limits.window {
            self.lockouts = 0;
        }
        if now.saturating_duration_since(self.window_start) > limits.window {
            self.failures = 0;
            self.window_start = now;
        }
        self.failures += 1;
        self.last_failure = now;
        if max == 0 || self.failures < max {
            return None;
        }
        let previous = (self.failures - 1, self.lockouts, self.locked_until);
        self.failures = 0;
        self.window_start = now;
        self.lockouts = self.lockouts.saturating_add(1);
        let backoff = backoff(limits, self.lockouts);
        let until = now + backoff;
        self.locked_until = Some(until);
        Some(Started {
            lockout: Lockout {
                scope,
                remaining: backoff,
            },
            until,
            previous_failures: previous.0,
            previous_lockouts: previous.1,
            previous_until: previous.2,
        })
    }

    /// Takes back an attempt that was the right password: its count, and the lock-out
    /// it started (unless another one has replaced it since).
    fn refund(&mut self, started: Option<Started>) {
        match started {
            Some(st) if self.locked_until == Some(st.until) => {
                self.lockouts = st.previous_lockouts;
                self.locked_until = st.previous_until;
                self.failures = st.previous_failures;
            }
            Some(_) => {}
            None => self.failures = self.failures.saturating_sub(1),
        }
    }

    /// Whether the entry still matters at `now` (locked, or failures inside the window).
    fn is_live(&self, now: Instant, window: Duration) -> bool {
        self.remaining(now).is_some() || now.saturating_duration_since(self.last_failure) <= window
    }
}

/// The `n`-th lock-out's length: `lockout · 2^(n-1)`, at most `lockout_max`.
fn backoff(limits: &LoginLimits, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    limits
        .lockout
        .checked_mul(factor)
        .unwrap_or(limits.lockout_max)
        .min(limits.lockout_max)
}

/// Entries kept before stale ones are dropped (bounds memory under a flood of names).
const PRUNE_ABOVE: usize = 10_000;
/// Characters of an account name used as its key: longer names cannot exist anyway.
const KEY_CHARS: usize = 64;

fn account_key(name: &str) -> String {
    name.chars().take(KEY_CHARS).collect()
}

/// A login attempt let through [`LoginThrottle::begin`], already counted as a failure;
/// end it with [`LoginThrottle::succeeded`] or [`LoginThrottle::failed`].
#[derive(Debug)]
#[must_use = "end the attempt with succeeded() or failed()"]
pub struct Attempt {
    account: String,
    ip: IpAddr,
    account_started: Option<Started>,
    address_started: Option<Started>,
}

/// The throttle's state (held behind a mutex in the server; every call is quick).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    limits: LoginLimits,
    accounts: HashMap<String, Entry>,
    addresses: HashMap<IpAddr, Entry>,
    known: HashSet<(String, IpAddr)>,
}

impl LoginThrottle {
    /// A throttle with `limits` and no failures yet.
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle {
            limits,
            ..LoginThrottle::default()
        }
    }

    /// The lock-out that refuses a login for `name` from `ip` now, if any.
    pub fn check(&self, name: &str, ip: IpAddr, now: Instant) -> Option<Lockout> {
        let key = account_key(name);
        let address = self.addresses.get(&ip).and_then(|e| e.remaining(now));
        let account = if self.known.contains(&(key.clone(), ip)) {
            None
        } else {
            self.accounts.get(&key).and_then(|e| e.remaining(now))
        };
        let address = address.map(|remaining| Lockout {
            scope: Scope::Address,
            remaining,
        });
        let account = account.map(|remaining| Lockout {
            scope: Scope::Account,
            remaining,
        });
        [address, account].into_iter().flatten().max_by_key(|l| l.remaining)
    }

    /// Lets a login for `name` from `ip` go on to its password check — counting it as a
    /// failure until it proves otherwise — or refuses it with the lock-out in force.
    pub fn begin(&mut self, name: &str, ip: IpAddr, now: Instant) -> Result<Attempt, Lockout> {
        if let Some(lockout) = self.check(name, ip, now) {
            return Err(lockout);
        }
        self.prune(now);
        let limits = self.limits.clone();
        let account = account_key(name);
        let account_started = self
            .accounts
            .entry(account.clone())
            .or_insert_with(|| Entry::new(now))
            .count(now, limits.max_failures_per_account, Scope::Account, &limits);
        let address_started = self.addresses.entry(ip).or_insert_with(|| Entry::new(now)).count(
            now,
            limits.max_failures_per_address,
            Scope::Address,
            &limits,
        );
        Ok(Attempt {
            account,
            ip,
            account_started,
            address_started,
        })
    }

    /// The attempt had the right password: it is refunded (with any lock-out it started)
    /// and its address becomes known to the account (exempt from the account's lock-outs).
    pub fn succeeded(&mut self, attempt: Attempt) {
        if let Some(e) = self.accounts.get_mut(&attempt.account) {
            e.refund(attempt.account_started);
        }
        if let Some(e) = self.addresses.get_mut(&attempt.ip) {
            e.refund(attempt.address_started);
        }
        self.known.insert((attempt.account, attempt.ip));
    }

    /// The attempt failed (it stays counted); returns the lock-outs it started.
    pub fn failed(&mut self, attempt: Attempt) -> Vec<Lockout> {
        [attempt.account_started, attempt.address_started]
            .into_iter()
            .flatten()
            .map(|st| st.lockout)
            .collect()
    }

    fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        if self.accounts.len() > PRUNE_ABOVE {
            self.accounts.retain(|_, e| e.is_live(now, window));
        }
        if self.addresses.len() > PRUNE_ABOVE {
            self.addresses.retain(|_, e| e.is_live(now, window));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            max_failures_per_account: 3,
            max_failures_per_address: 5,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(300),
        }
    }

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));
    const OFFICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Fails `n` times for `name` from `ip` at `now`; returns the lock-outs started.
    fn fail_n(t: &mut LoginThrottle, name: &str, ip: IpAddr, now: Instant, n: u32) -> Vec<Lockout> {
        let mut started = Vec::new();
        for _ in 0..n {
            if let Ok(a) = t.begin(name, ip, now) {
                started.extend(t.failed(a));
            }
        }
        started
    }

    fn succeed(t: &mut LoginThrottle, name: &str, ip: IpAddr, now: Instant) {
        let a = t.begin(name, ip, now).expect("not locked");
        t.succeeded(a);
    }

    #[test]
    fn the_account_locks_after_max_failures_and_the_lock_doubles_up_to_the_cap() {
        let mut t = LoginThrottle::new(limits());
        let mut now = Instant::now();
        assert!(fail_n(&mut t, "zhang", ATTACKER, now, 2).is_empty());
        assert_eq!(t.check("zhang", OFFICE, now), None);
        let started = fail_n(&mut t, "zhang", ATTACKER, now, 1);
        assert_eq!(
            started,
            vec![Lockout {
                scope: Scope::Account,
                remaining: s(60)
            }]
        );
        let l = t.begin("zhang", OFFICE, now + s(10)).expect_err("locked");
        assert_eq!((l.scope, l.retry_after_secs()), (Scope::Account, 50));
        // Each further lock-out doubles, never beyond lockout_max.
        let mut lengths = Vec::new();
        for i in 0..5 {
            now += s(400);
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, i));
            let started = fail_n(&mut t, "zhang", ip, now, 3);
            lengths.push(started[0].remaining.as_secs());
        }
        assert_eq!(lengths, [120, 240, 300, 300, 300]);
    }

    #[test]
    fn parallel_attempts_are_counted_before_their_passwords_are_checked() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        let begun: Vec<_> = (0..10).map(|_| t.begin("zhang", ATTACKER, now)).collect();
        assert_eq!(begun.iter().filter(|a| a.is_ok()).count(), 3);
        for a in begun.into_iter().flatten() {
            let _ = t.failed(a);
        }
    }

    #[test]
    fn attempts_during_a_lockout_neither_count_nor_extend_it() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        fail_n(&mut t, "zhang", ATTACKER, now, 3);
        for i in 0..100 {
            assert!(t.begin("zhang", OFFICE, now + s(i % 60)).is_err());
        }
        assert_eq!(
            t.check("zhang", OFFICE, now + s(60)),
            None,
            "the lock-out ended on time"
        );
    }

    #[test]
    fn the_right_password_refunds_its_attempt_and_any_lockout_it_started() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        fail_n(&mut t, "zhang", OFFICE, now, 2);
        succeed(&mut t, "zhang", OFFICE, now);
        assert_eq!(
            t.check("zhang", ATTACKER, now),
            None,
            "no lock-out after the right password"
        );
        // Its earlier failures still count: one more failure locks.
        assert_eq!(fail_n(&mut t, "zhang", ATTACKER, now, 1).len(), 1);
    }

    #[test]
    fn a_known_address_is_exempt_from_the_account_lock_but_not_its_own() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        succeed(&mut t, "zhang", OFFICE, now);
        fail_n(&mut t, "zhang", ATTACKER, now, 3);
        assert_eq!(t.check("zhang", OFFICE, now), None);
        assert_eq!(t.check("zhang", ATTACKER, now).map(|l| l.scope), Some(Scope::Account));
        for i in 0..5 {
            fail_n(&mut t, &format!("wang{i}"), OFFICE, now, 1);
        }
        assert_eq!(t.check("zhang", OFFICE, now).map(|l| l.scope), Some(Scope::Address));
    }

    #[test]
    fn the_backoff_falls_back_after_a_quiet_window() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        fail_n(&mut t, "zhang", ATTACKER, now, 3);
        let again = now + s(60) + s(10);
        assert_eq!(fail_n(&mut t, "zhang", OFFICE, again, 3)[0].remaining, s(120));
        let much_later = again + s(120) + s(601);
        assert_eq!(fail_n(&mut t, "zhang", OFFICE, much_later, 3)[0].remaining, s(60));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        for i in 0..10 {
            assert!(fail_n(&mut t, "zhang", ATTACKER, now + s(i * 601), 2).is_empty());
        }
    }

    #[test]
    fn a_limit_of_zero_turns_that_limit_off() {
        let mut t = LoginThrottle::new(LoginLimits {
            max_failures_per_account: 0,
            max_failures_per_address: 0,
            ..limits()
        });
        let now = Instant::now();
        assert!(fail_n(&mut t, "zhang", ATTACKER, now, 1000).is_empty());
        assert_eq!(t.check("zhang", ATTACKER, now), None);
    }

    #[test]
    fn many_names_do_not_grow_the_state_without_bound() {
        let mut t = LoginThrottle::new(LoginLimits {
            max_failures_per_address: 0,
            ..limits()
        });
        let now = Instant::now();
        for i in 0..PRUNE_ABOVE + 10 {
            fail_n(&mut t, &format!("n{i}"), ATTACKER, now, 1);
        }
        fail_n(&mut t, "last", OFFICE, now + s(601), 1);
        assert!(t.accounts.len() <= 2, "{}", t.accounts.len());
    }
}

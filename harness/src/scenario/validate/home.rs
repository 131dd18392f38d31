//! The home keys of `[topology]` (`sites`, `forward`, `hairpin`, `uplink_mtu`,
//! `pmtu_black_hole`, `clamp_mss`, `carrier_timeout`, `wifi`): allowed with
//! `layout = "home"` only, each checked against the hosts it names.

use toml::Spanned;

use super::Validator;
use crate::scenario::model::{LinkHost, TopologySettings};
use crate::scenario::written::TopologyTable;
use crate::topology::home::{Site, MIN_MTU};
use crate::topology::{Host, Layout};

impl Validator<'_> {
    /// Fills `t.home` from the home keys of `r`, or says why they do not fit; the router
    /// forwards `port` (the balancer's) unless `forward = false`.
    pub(super) fn home(&mut self, r: &TopologyTable, t: &mut TopologySettings, port: u16) {
        if t.layout != Layout::Home {
            let given = [
                ("sites", r.sites.as_ref().map(Spanned::span)),
                ("forward", r.forward.as_ref().map(Spanned::span)),
                ("hairpin", r.hairpin.as_ref().map(Spanned::span)),
                ("uplink_mtu", r.uplink_mtu.as_ref().map(Spanned::span)),
                (
                    "pmtu_black_hole",
                    r.pmtu_black_hole.as_ref().map(Spanned::span),
                ),
                ("clamp_mss", r.clamp_mss.as_ref().map(Spanned::span)),
                (
                    "carrier_timeout",
                    r.carrier_timeout.as_ref().map(Spanned::span),
                ),
                ("wifi", r.wifi.as_ref().map(Spanned::span)),
            ];
            for (key, span) in given {
                if let Some(span) = span {
                    self.err(
                        span,
                        format!("`{key}` describes a home, but the layout is `{}`", t.layout),
                        Some("`layout = \"home\"` in [topology], or no home keys".into()),
                    );
                }
            }
            return;
        }
        if let Some(sites) = &r.sites {
            let mut out = Vec::new();
            for s in sites.get_ref() {
                match Site::ALL.iter().find(|(n, _)| n == s.get_ref()) {
                    Some((_, site)) => out.push(*site),
                    None => {
                        let names: Vec<&str> = Site::ALL.iter().map(|(n, _)| *n).collect();
                        self.err(
                            s.span(),
                            format!("there is no site `{}`", s.get_ref()),
                            Some(format!("one of {}", names.join(", "))),
                        );
                        out.push(Site::default());
                    }
                }
            }
            if out.len() > t.clients {
                self.err(
                    sites.span(),
                    format!("{} sites for {} client hosts", out.len(), t.clients),
                    Some(format!(
                        "one site a client host (`clients = {}` in [topology])",
                        out.len()
                    )),
                );
                out.truncate(t.clients);
            }
            t.home.sites = out;
        }
        let home = &mut t.home;
        let forward = r.forward.as_ref().is_none_or(|f| *f.get_ref());
        home.forward = forward.then_some(port);
        if let Some(h) = &r.hairpin {
            home.hairpin = *h.get_ref();
        }
        if let Some(b) = &r.pmtu_black_hole {
            home.pmtu_black_hole = *b.get_ref();
        }
        if let Some(c) = &r.clamp_mss {
            home.clamp_mss = *c.get_ref();
        }
        if let Some(m) = &r.uplink_mtu {
            if !(MIN_MTU..=65535).contains(m.get_ref()) {
                self.err(
                    m.span(),
                    format!("uplink_mtu {} is out of range", m.get_ref()),
                    Some(format!("{MIN_MTU} to 65535 (PPPoE is 1492)")),
                );
            } else {
                t.home.uplink_mtu = Some(*m.get_ref());
            }
        }
        if let Some(c) = &r.carrier_timeout {
            if let Some(d) = self.positive(c, "carrier_timeout") {
                t.home.carrier_timeout = Some(d);
            }
        }
        let at_home = |t: &TopologySettings, h: LinkHost| match h {
            LinkHost::Lb | LinkHost::Server(_) => true,
            LinkHost::Client(i) => t.home.site(i).at_home(),
            _ => false,
        };
        if let Some(wifi) = &r.wifi {
            let mut hosts = Vec::new();
            for name in wifi.get_ref() {
                // Hosts named before `wifi` is known: the Wi-Fi itself is no host here.
                let Some(h) = self.host(name, t) else {
                    continue;
                };
                if !at_home(t, h) {
                    self.err(
                        name.span(),
                        format!("{h} cannot be on the Wi-Fi"),
                        Some(
                            "the lb, a server, or a client whose site is inside or hairpin".into(),
                        ),
                    );
                    continue;
                }
                hosts.push(match h {
                    LinkHost::Lb => Host::Lb,
                    LinkHost::Server(i) => Host::Server(i),
                    LinkHost::Client(i) => Host::Client(i),
                    LinkHost::Router | LinkHost::Wifi => unreachable!("not at home"),
                });
            }
            t.home.wifi = hosts;
        }
    }
}

//! Requests to URLs a tenant gave (its LLM provider, its webhook endpoints, documents to
//! fetch) must not become a way into the platform's own network (SSRF). Unless the platform
//! allows private targets (`FETCH_ALLOW_PRIVATE`, for development or an intranet deployment),
//! an IP-literal host must be public ([`is_public`]), and a client from [`guarded`] resolves
//! names to public addresses only, never uses a proxy and never follows a redirect.
//! `rag::fetch` pins each hop's checked addresses itself, because it follows redirects by hand.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether an address may be reached when private targets are not allowed: not loopback,
/// private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 — cloud metadata —
/// and fe80::/10), CGNAT (100.64/10), unspecified, broadcast, multicast, documentation,
/// benchmarking or reserved. IPv6 addresses embedding an IPv4 one (mapped `::ffff:a.b.c.d`,
/// NAT64, 6to4) are judged by it; other IPv6 addresses must be global unicast (2000::/3).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = a == 0 // "this network", 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..=127).contains(&b)) // CGNAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // ::/96: unspecified, loopback, deprecated IPv4-compatible addresses.
    if s[..6] == [0; 6] {
        return false;
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4 2002::/16.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    let special = (s[0] == 0x2001
        && (s[1] == 0 // Teredo
            || s[1] == 0xdb8 // documentation
            || (s[1] == 2 && s[2] == 0) // benchmarking
            || (s[1] & 0xfff0) == 0x20 // ORCHIDv2
            || (s[1] & 0xfff0) == 0x10)) // ORCHID
        || (s[0] == 0x3fff && s[1] < 0x1000); // documentation (RFC 9637)
                                              // Global unicast only: excludes fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64 ...
    !special && (s[0] & 0xe000) == 0x2000
}

/// An IP literal host (`127.0.0.1`, `[::1]`); the URL parser has already normalised other
/// IPv4 spellings (`0x7f.1`, `2130706433`) to dotted quads.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Refuses a URL that is not http(s), has no host, or whose host is an internal address
/// (names are checked when resolved, by [`guarded`] clients).
pub fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    let host = parsed.host_str().ok_or("has no host")?;
    if allow_private {
        return Ok(());
    }
    let internal = match literal_ip(host) {
        Some(ip) => !is_public(ip),
        None => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    };
    if internal {
        return Err(format!(
            "{host} is a private or loopback address, which may not be used here"
        ));
    }
    Ok(())
}

/// Resolves names to public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address; internal ones may not be used here"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `builder` as a client for tenant-given URLs: no redirects, and (unless internal targets
/// are allowed) no proxy and public addresses only.
pub fn guarded(
    builder: reqwest::ClientBuilder,
    allow_private: bool,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = builder.redirect(reqwest::redirect::Policy::none());
    if !allow_private {
        builder = builder.no_proxy().dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_internal_addresses() {
        let cases = [
            ("127.0.0.1", false),
            ("10.0.0.1", false),
            ("172.16.5.4", false),
            ("172.32.0.1", true),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.128.0.1", true),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("192.0.2.10", false),
            ("198.51.100.1", false),
            ("203.0.113.9", false),
            ("198.18.0.1", false),
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("::1", false),
            ("::", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("fd00::1", false),
            ("fc00::1", false),
            ("fe80::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::808:808", true),
            ("2002:7f00:1::", false),
            ("2606:4700::1", true),
            ("2a00:1450:4001:80b::200e", true),
        ];
        for (ip, public) in cases {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(parsed), public, "{ip}");
        }
    }

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:11434/v1",
            "http://169.254.169.254/latest",
            "http://[::1]/v1",
            "http://10.0.0.5/v1",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
            assert!(check_target(bad, true).is_ok(), "{bad}");
        }
        assert!(check_target("https://api.openai.com/v1", false).is_ok());
        assert!(check_target("ftp://example.com", true).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }
}

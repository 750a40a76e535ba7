//! Feed arbitrary strings (the UTF-8 of the input, lossily) to the SPIFFE ID and trust
//! domain parsers of isthmus-ca: `SpiffeId::parse`, `TrustDomain::new`, the identity
//! forms (`SpiffeId::identity`) and `spiffe::dns_label`.
//!
//! Asserts: nothing panics; whatever parses prints back to a string that parses to an
//! equal value (ID, trust domain, identity); a parsed ID's parts are consistent (its text
//! is `spiffe://` + trust domain + path, within the spec's length limits), and an
//! identity form rebuilt in the same trust domain is the same ID.

#![no_main]

use isthmus_ca::spiffe::{MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES, dns_label};
use isthmus_ca::{SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

fn check_id(text: &str) {
    let Ok(id) = SpiffeId::parse(text) else {
        return;
    };
    let printed = id.to_string();
    assert_eq!(printed, id.as_str());
    let again = SpiffeId::parse(&printed).expect("a printed SPIFFE ID parses");
    assert_eq!(again, id);
    assert!(printed.len() <= MAX_SPIFFE_ID_BYTES);
    assert_eq!(
        printed,
        format!("spiffe://{}{}", id.trust_domain(), id.path()),
        "an ID is its trust domain and path"
    );
    assert!(id.path().is_empty() || id.path().starts_with('/'));
    let domain = TrustDomain::new(id.trust_domain().as_str()).expect("its trust domain parses");
    assert_eq!(&domain, id.trust_domain());
    if id.path().is_empty() {
        assert_eq!(domain.id(), id);
    }
    if let Ok(identity) = id.identity() {
        let rebuilt = identity.to_spiffe_id(id.trust_domain());
        assert_eq!(
            rebuilt, id,
            "an identity form prints back to the ID it came from"
        );
        let reparsed = SpiffeId::parse(rebuilt.as_str()).expect("a rebuilt ID parses");
        assert_eq!(reparsed.identity().as_ref(), Ok(&identity));
    }
}

fn check_domain(text: &str) {
    let Ok(domain) = TrustDomain::new(text) else {
        return;
    };
    let printed = domain.to_string();
    assert!(!printed.is_empty() && printed.len() <= MAX_TRUST_DOMAIN_BYTES);
    assert_eq!(TrustDomain::new(&printed).as_ref(), Ok(&domain));
    assert_eq!(printed.parse::<TrustDomain>().as_ref(), Ok(&domain));
    // The trust domain's own ID (what signing certificates carry) parses back to itself.
    let id = domain.id();
    assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
    assert_eq!(id.trust_domain(), &domain);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_id(&text);
    // The same text as a path below a fixed trust domain, and as a trust domain.
    check_id(&format!("spiffe://mesh.example/{text}"));
    check_domain(&text);
    if let Ok(label) = dns_label("fuzz", &text) {
        assert_eq!(label, *text);
        check_domain(&label);
        assert!(check_segment_id(&label));
    }
});

/// A DNS label is a valid path segment: `federation/<label>` is a federation node.
fn check_segment_id(label: &str) -> bool {
    let id = SpiffeId::parse(&format!("spiffe://mesh.example/federation/{label}"))
        .expect("a DNS label makes a valid path segment");
    id.identity().is_ok()
}

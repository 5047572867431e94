//! User-Agent profiles: many apps name their push parameters their own way (Kazoo's model). A
//! profile maps a User-Agent regex to the Contact parameter names that app uses for the app id,
//! the push type and the token; the first matching profile wins, and RFC 8599 / the older Linphone
//! names stay the fallback.

use super::contact::{push_binding, ContactError, ContactInfo, PushBinding};
use regex::Regex;

/// One `modparam("push", "ua_profile", "name=...;regex=...;app=...;type=...;token=...")`.
#[derive(Clone, Debug)]
pub struct UaProfile {
    pub name: String,
    pub regex: Regex,
    /// Contact parameter holding the app id (as `app-id`).
    pub app: Option<String>,
    /// Contact parameter holding the push type (as `pn-type`: apple, google, firebase, ...).
    pub kind: Option<String>,
    /// Contact parameter holding the token (as `pn-tok`).
    pub token: String,
}

impl PartialEq for UaProfile {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.regex.as_str() == other.regex.as_str()
            && self.app == other.app
            && self.kind == other.kind
            && self.token == other.token
    }
}

impl Eq for UaProfile {}

impl UaProfile {
    pub fn parse(spec: &str) -> Result<UaProfile, String> {
        let mut name = None;
        let mut regex = None;
        let (mut app, mut kind, mut token) = (None, None, None);
        // The regex may itself contain ';': it runs to the next known key.
        let mut rest = spec.trim();
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once('=')
                .ok_or_else(|| format!("'{rest}' is not key=value"))?;
            let key = key.trim().to_ascii_lowercase();
            let end = ["name=", "regex=", "app=", "type=", "token="]
                .iter()
                .filter_map(|k| after.find(&format!(";{k}")))
                .min()
                .unwrap_or(after.len());
            let value = after[..end].trim().to_string();
            rest = after[end..].trim_start_matches(';').trim();
            let slot = match key.as_str() {
                "name" => &mut name,
                "regex" => &mut regex,
                "app" => &mut app,
                "type" => &mut kind,
                "token" => &mut token,
                other => {
                    return Err(format!(
                        "unknown key '{other}' (name, regex, app, type, token)"
                    ))
                }
            };
            if slot.is_some() {
                return Err(format!("key '{key}' is given twice"));
            }
            *slot = Some(value).filter(|v| !v.is_empty());
        }
        let regex = regex.ok_or("missing regex=<User-Agent regex>")?;
        Ok(UaProfile {
            name: name.ok_or("missing name=<profile name>")?,
            regex: Regex::new(&regex)
                .map_err(|e| format!("regex '{regex}' does not compile: {e}"))?,
            app: app.map(|a| a.to_ascii_lowercase()),
            kind: kind.map(|k| k.to_ascii_lowercase()),
            token: token
                .ok_or("missing token=<Contact parameter with the token>")?
                .to_ascii_lowercase(),
        })
    }
}

/// The push binding of a Contact, reading the names of the first profile whose regex matches the
/// User-Agent (when the Contact carries that profile's token parameter), else the standard names.
pub fn binding_for(
    info: &ContactInfo,
    user_agent: Option<&str>,
    profiles: &[UaProfile],
) -> Result<Option<PushBinding>, ContactError> {
    let profile = user_agent.and_then(|ua| profiles.iter().find(|p| p.regex.is_match(ua)));
    let Some(profile) = profile else {
        return push_binding(info);
    };
    let get = |name: &str| {
        info.uri_params
            .iter()
            .chain(info.header_params.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let Some(token) = get(&profile.token) else {
        return push_binding(info);
    };
    // Rename the profile's parameters to the older Linphone names and let the standard parser
    // check them (sizes, characters, the apple/google mapping).
    let mut renamed = ContactInfo {
        uri_params: Vec::new(),
        header_params: Vec::new(),
        ..info.clone()
    };
    renamed.uri_params.push(("pn-tok".to_string(), token));
    if let Some(kind) = profile.kind.as_deref().and_then(get) {
        renamed.uri_params.push(("pn-type".to_string(), kind));
    }
    if let Some(app) = profile.app.as_deref().and_then(get) {
        renamed.uri_params.push(("app-id".to_string(), app));
    }
    push_binding(&renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::contact::parse_contact_header;

    fn kazoo() -> UaProfile {
        UaProfile::parse("name=kazoo;regex=^Kazoo-Phone/[0-9];app=X-App;type=x-type;token=x-tok")
            .unwrap()
    }

    #[test]
    fn profiles_parse_and_refuse_bad_specs() {
        let p = kazoo();
        assert_eq!(p.name, "kazoo");
        assert_eq!(p.app.as_deref(), Some("x-app"));
        // A regex with ';' in it.
        let semi = UaProfile::parse("name=s;regex=^A;B$;token=t").unwrap();
        assert!(semi.regex.is_match("A;B"));
        assert!(UaProfile::parse("name=x;regex=(;token=t")
            .unwrap_err()
            .contains("does not compile"));
        assert!(UaProfile::parse("name=x;token=t")
            .unwrap_err()
            .contains("missing regex"));
        assert!(UaProfile::parse("colour=red;name=x;regex=.;token=t")
            .unwrap_err()
            .contains("unknown key"));
        assert!(UaProfile::parse("regex=.;token=t")
            .unwrap_err()
            .contains("missing name"));
    }

    #[test]
    fn matching_user_agent_reads_the_profile_names() {
        let info = &parse_contact_header(
            "<sip:alice@10.0.0.1;x-tok=ABCDEF0123456789;x-type=apple;x-app=org.example.phone>",
        )
        .unwrap()[0];
        let b = binding_for(info, Some("Kazoo-Phone/2.1 (iOS)"), &[kazoo()])
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.provider.as_str(), b.prid.as_str()),
            ("apns", "ABCDEF0123456789")
        );
        assert_eq!(b.param.as_deref(), Some("org.example.phone"));
        // Another User-Agent: the standard names, which this Contact does not carry.
        assert_eq!(
            binding_for(info, Some("Linphone/5.0"), &[kazoo()]).unwrap(),
            None
        );
        assert_eq!(binding_for(info, None, &[kazoo()]).unwrap(), None);
    }

    #[test]
    fn standard_names_remain_the_fallback_and_bad_values_are_refused() {
        let rfc = &parse_contact_header("<sip:a@h;pn-provider=fcm;pn-prid=tok123;pn-param=proj>")
            .unwrap()[0];
        let b = binding_for(rfc, Some("Kazoo-Phone/2.1"), &[kazoo()])
            .unwrap()
            .unwrap();
        assert_eq!(b.provider, "fcm");
        let bad = &parse_contact_header("<sip:a@h;x-tok=has%20space;x-type=apple>").unwrap()[0];
        assert!(binding_for(bad, Some("Kazoo-Phone/2.1"), &[kazoo()]).is_err());
    }
}

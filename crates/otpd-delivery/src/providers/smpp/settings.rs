//! The `smpp` adapter's settings, read and checked from its `[[providers]]` entry once at
//! start (and by `otpd config check`): nothing here connects.

use std::path::Path;
use std::time::Duration;

use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use crate::config::ProviderConfig;
use crate::providers::read_secret;

/// The SMPP port carriers use unless they say otherwise.
pub const DEFAULT_PORT: u16 = 2775;
/// Outstanding `submit_sm` allowed by default (SMSCs commonly grant 10).
pub const DEFAULT_WINDOW: u32 = 10;
/// `submit_sm` per second by default (a typical carrier grant; raise to what yours allows).
pub const DEFAULT_MAX_PER_SECOND: u32 = 50;
/// Keep-alive interval by default.
pub const DEFAULT_ENQUIRE_LINK: Duration = Duration::from_secs(30);
/// Time allowed to connect and bind by default.
pub const DEFAULT_BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between reconnection attempts by default.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Longest `system_id` (SMPP 3.4 §5.2.1: 16 octets with the terminating NUL).
const MAX_SYSTEM_ID: usize = 15;
/// Longest password (9 octets with the NUL).
const MAX_PASSWORD: usize = 8;
/// Longest `system_type` (13 octets with the NUL).
const MAX_SYSTEM_TYPE: usize = 12;
/// Longest `source_addr` (21 octets with the NUL).
const MAX_ADDRESS: usize = 20;
/// TON/NPI of an E.164 number: international, ISDN.
const TON_INTERNATIONAL: u8 = 1;
const NPI_ISDN: u8 = 1;
/// TON of an alphanumeric sender name.
const TON_ALPHANUMERIC: u8 = 5;

/// An SMPP address: type of number, numbering plan, digits or name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// Type of number.
    pub ton: u8,
    /// Numbering plan indicator.
    pub npi: u8,
    /// The address itself (no `+`).
    pub addr: String,
}

/// How the SMSC's message ids in `submit_sm_resp` and in receipts are compared
/// (`message_id_format`). SMPP 3.4 leaves the id's format to the SMSC; many answer
/// `submit_sm_resp` with a hex id and put its decimal reading in the receipt (or the
/// reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdFormat {
    /// As given, else one's hex reading against the other's decimal reading, else the
    /// same number written with other case or padding.
    Auto,
    /// Only as given (character for character).
    Exact,
    /// `submit_sm_resp` gives hex, receipts the decimal reading (or the same text).
    HexToDecimal,
    /// `submit_sm_resp` gives decimal, receipts the hex reading (or the same text).
    DecimalToHex,
}

/// How the session binds (`bind_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// One `bind_transceiver` connection for sends and receipts.
    Transceiver,
    /// A `bind_transmitter` connection for sends and a `bind_receiver` one for receipts,
    /// for SMSCs that offer no transceiver binds.
    TransmitterReceiver,
}

/// The `data_coding` of texts that fit GSM 03.38 (`data_coding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextCoding {
    /// 0: the SMSC's default alphabet, GSM 03.38 (unpacked septets).
    Gsm7,
    /// 1: IA5 (ASCII); texts with other characters go as GSM 03.38.
    Ia5,
    /// 3: Latin-1 (ISO-8859-1), for SMSCs that read 0 as Latin-1; texts with other
    /// characters go as GSM 03.38.
    Latin1,
}

/// Everything the session and the encoder need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `smpp://host:port` (for logs).
    pub url: String,
    /// Host name or address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Bind login.
    pub system_id: String,
    /// Bind password (never logged).
    pub password: SecretString,
    /// Bind `system_type`.
    pub system_type: String,
    /// Sender of every message.
    pub source: Address,
    /// TON of recipients.
    pub dest_ton: u8,
    /// NPI of recipients.
    pub dest_npi: u8,
    /// Most outstanding `submit_sm`.
    pub window: u32,
    /// Most `submit_sm` per second.
    pub max_per_second: u32,
    /// Keep-alive interval.
    pub enquire_link: Duration,
    /// Wait for each response (`submit_sm_resp`, `enquire_link_resp`).
    pub response_timeout: Duration,
    /// Time allowed to connect and bind.
    pub bind_timeout: Duration,
    /// Longest pause between reconnection attempts.
    pub reconnect_max: Duration,
    /// How message ids are compared.
    pub id_format: IdFormat,
    /// One transceiver bind, or a transmitter and a receiver.
    pub bind_mode: BindMode,
    /// The coding of GSM-compatible texts.
    pub text_coding: TextCoding,
    /// TLS from the first byte (`smpps`), and the extra CA certificates to trust.
    pub tls: Option<Option<std::path::PathBuf>>,
}

impl Settings {
    /// Reads and checks the `[[providers]]` entry of kind `smpp`.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let fail = |what: String| format!("provider '{name}': {what}");
        let need = |what: &str| fail(format!("kind smpp needs {what}"));
        if let Some(c) = config.channels.iter().find(|c| **c != Channel::Sms) {
            return Err(fail(format!("smpp serves only sms, not {c}")));
        }
        let host = config.host.as_deref().ok_or_else(|| need("host"))?;
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            return Err(fail("host must be a host name or address".into()));
        }
        let port = config.port.unwrap_or(DEFAULT_PORT);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let url_host = if host.contains(':') {
            format!("[{host}]") // an IPv6 literal in a URL
        } else {
            host.clone()
        };
        let system_id = config.system_id.clone().ok_or_else(|| need("system_id"))?;
        check_field("system_id", &system_id, 1, MAX_SYSTEM_ID).map_err(&fail)?;
        let password = password(config)?;
        check_field("password", password.expose_secret(), 0, MAX_PASSWORD).map_err(&fail)?;
        let system_type = config.system_type.clone().unwrap_or_default();
        check_field("system_type", &system_type, 0, MAX_SYSTEM_TYPE).map_err(&fail)?;
        let from = config.from.as_deref().ok_or_else(|| need("from"))?;
        let source = source_address(from, config.source_ton, config.source_npi).map_err(&fail)?;
        let window = config.window_size.unwrap_or(DEFAULT_WINDOW);
        let max_per_second = config.max_per_second.unwrap_or(DEFAULT_MAX_PER_SECOND);
        if window == 0 || max_per_second == 0 {
            return Err(fail(
                "window_size and max_per_second must be at least 1".into(),
            ));
        }
        let enquire_link = config
            .enquire_link_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_ENQUIRE_LINK);
        let reconnect_max = config
            .reconnect_max_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_RECONNECT_MAX);
        let bind_timeout = config
            .bind_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_BIND_TIMEOUT);
        if enquire_link.is_zero()
            || reconnect_max.is_zero()
            || bind_timeout.is_zero()
            || config.timeout_ms == 0
        {
            return Err(fail(
                "enquire_link_seconds, reconnect_max_seconds, bind_timeout_ms and timeout_ms must be at least 1".into(),
            ));
        }
        let id_format = match config.message_id_format.as_deref().unwrap_or("auto") {
            "auto" => IdFormat::Auto,
            "exact" => IdFormat::Exact,
            "hex_to_decimal" => IdFormat::HexToDecimal,
            "decimal_to_hex" => IdFormat::DecimalToHex,
            other => {
                return Err(fail(format!(
                    "message_id_format must be auto, exact, hex_to_decimal or decimal_to_hex (not '{other}')"
                )));
            }
        };
        let bind_mode = match config.bind_mode.as_deref().unwrap_or("transceiver") {
            "transceiver" => BindMode::Transceiver,
            "transmitter_receiver" => BindMode::TransmitterReceiver,
            other => {
                return Err(fail(format!(
                    "bind_mode must be transceiver or transmitter_receiver (not '{other}')"
                )));
            }
        };
        let text_coding = match config.data_coding.as_deref().unwrap_or("gsm7") {
            "gsm7" => TextCoding::Gsm7,
            "ia5" => TextCoding::Ia5,
            "latin1" => TextCoding::Latin1,
            other => {
                return Err(fail(format!(
                    "data_coding must be gsm7, ia5 or latin1 (not '{other}')"
                )));
            }
        };
        let tls = match config.tls.as_deref().unwrap_or("none") {
            "none" if config.tls_ca_file.is_some() => {
                return Err(fail("tls_ca_file needs tls = \"tls\" (smpps)".into()));
            }
            "none" => None,
            "tls" => Some(config.tls_ca_file.as_ref().map(std::path::PathBuf::from)),
            other => {
                return Err(fail(format!(
                    "tls must be tls (smpps, TLS from the first byte) or none (not '{other}')"
                )));
            }
        };
        if let Some(Some(path)) = &tls {
            super::tls::read_roots(path).map_err(&fail)?;
        }
        let scheme = if tls.is_some() { "smpps" } else { "smpp" };
        Ok(Settings {
            id_format,
            bind_mode,
            text_coding,
            tls,
            url: format!("{scheme}://{url_host}:{port}"),
            host,
            port,
            system_id,
            password,
            system_type,
            source,
            dest_ton: config.dest_ton.unwrap_or(TON_INTERNATIONAL),
            dest_npi: config.dest_npi.unwrap_or(NPI_ISDN),
            window,
            max_per_second,
            enquire_link,
            response_timeout: Duration::from_millis(config.timeout_ms),
            bind_timeout,
            reconnect_max,
        })
    }

    /// A recipient in this provider's addressing (E.164 without the `+`).
    pub fn destination(&self, to: &str) -> Address {
        Address {
            ton: self.dest_ton,
            npi: self.dest_npi,
            addr: to.trim_start_matches('+').to_string(),
        }
    }
}

/// An SMPP C-octet string field: printable ASCII of the allowed length.
fn check_field(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    if value.len() < min || value.len() > max {
        return Err(format!("{field} must have {min} to {max} characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(format!("{field} must be printable ASCII"));
    }
    Ok(())
}

/// The sender: a number (`+233…` or digits: international/ISDN unless set) or a name
/// (alphanumeric, at most 11 characters on the air).
fn source_address(from: &str, ton: Option<u8>, npi: Option<u8>) -> Result<Address, String> {
    let digits = from.trim_start_matches('+');
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let addr = if numeric { digits } else { from };
    check_field("from", addr, 1, MAX_ADDRESS)?;
    let (default_ton, default_npi) = if numeric {
        (TON_INTERNATIONAL, NPI_ISDN)
    } else {
        (TON_ALPHANUMERIC, 0)
    };
    Ok(Address {
        ton: ton.unwrap_or(default_ton),
        npi: npi.unwrap_or(default_npi),
        addr: addr.to_string(),
    })
}

/// The bind password: `password`, else the file `password_file`, else the environment
/// (`OTPD_PROVIDER_<NAME>_PASSWORD`, or a file named by `…_PASSWORD_FILE`).
fn password(config: &ProviderConfig) -> Result<SecretString, String> {
    let name = &config.name;
    if let Some(p) = &config.password {
        return Ok(p.clone());
    }
    if let Some(path) = &config.password_file {
        return read_secret(path).map_err(|e| format!("provider '{name}': password_file: {e}"));
    }
    let var = env_name(name);
    if let Ok(p) = std::env::var(&var) {
        return Ok(SecretString::from(p));
    }
    if let Ok(path) = std::env::var(format!("{var}_FILE")) {
        return read_secret(Path::new(&path))
            .map_err(|e| format!("provider '{name}': {var}_FILE: {e}"));
    }
    Err(format!(
        "provider '{name}': kind smpp needs password (or password_file, or {var} / {var}_FILE in the environment)"
    ))
}

/// `OTPD_PROVIDER_<NAME>_PASSWORD`, the name upper-cased with other characters as `_`.
pub fn env_name(provider: &str) -> String {
    let upper: String = provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("OTPD_PROVIDER_{upper}_PASSWORD")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config() -> ProviderConfig {
        ProviderConfig {
            name: "smsc".into(),
            kind: "smpp".into(),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            host: Some("127.0.0.1".into()),
            system_id: Some("otpd".into()),
            password: Some(SecretString::from("s3cret".to_string())),
            from: Some("+15005550006".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_addresses() {
        let s = Settings::from_config(&config()).unwrap();
        assert_eq!(s.url, "smpp://127.0.0.1:2775");
        assert_eq!(
            s.source,
            Address {
                ton: 1,
                npi: 1,
                addr: "15005550006".into()
            }
        );
        assert_eq!(s.destination("+233241234567").addr, "233241234567");
        assert_eq!(
            (s.window, s.max_per_second),
            (DEFAULT_WINDOW, DEFAULT_MAX_PER_SECOND)
        );
        let mut c = config();
        c.from = Some("Acme".into());
        c.port = Some(2776);
        c.host = Some("::1".into());
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(
            s.source,
            Address {
                ton: 5,
                npi: 0,
                addr: "Acme".into()
            }
        );
        assert_eq!(s.url, "smpp://[::1]:2776");
    }

    /// A change to the config, named by what the error must mention.
    type Case = (&'static str, Box<dyn Fn(&mut ProviderConfig)>);

    #[test]
    fn refuses_what_a_bind_or_pdu_cannot_carry() {
        let cases: Vec<Case> = vec![
            ("host", Box::new(|c| c.host = None)),
            ("system_id", Box::new(|c| c.system_id = None)),
            (
                "system_id",
                Box::new(|c| c.system_id = Some("a-very-long-system-id".into())),
            ),
            (
                "password",
                Box::new(|c| c.password = Some(SecretString::from("123456789".to_string()))),
            ),
            ("from", Box::new(|c| c.from = None)),
            (
                "from",
                Box::new(|c| c.from = Some("+123456789012345678901".into())),
            ),
            ("only sms", Box::new(|c| c.channels = vec![Channel::Voice])),
            ("window_size", Box::new(|c| c.window_size = Some(0))),
            ("host", Box::new(|c| c.host = Some("smsc.example/x".into()))),
        ];
        for (what, change) in cases {
            let mut c = config();
            change(&mut c);
            let e = Settings::from_config(&c).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
            assert!(!e.contains("s3cret"));
        }
    }

    #[test]
    fn password_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "filepw\n").unwrap();
        let mut c = config();
        c.password = None;
        c.password_file = Some(path.clone());
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(s.password.expose_secret(), "filepw");
        // The environment, by the provider's name (unique here: tests run in parallel).
        c.password_file = None;
        c.name = "smsc-env-test".into();
        assert_eq!(env_name(&c.name), "OTPD_PROVIDER_SMSC_ENV_TEST_PASSWORD");
        assert!(
            Settings::from_config(&c)
                .unwrap_err()
                .contains("OTPD_PROVIDER_SMSC_ENV_TEST_PASSWORD")
        );
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("OTPD_PROVIDER_SMSC_ENV_TEST_PASSWORD_FILE", &path) };
        assert_eq!(
            Settings::from_config(&c).unwrap().password.expose_secret(),
            "filepw"
        );
        c.password_file = Some(dir.path().join("missing"));
        let e = Settings::from_config(&c).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn id_format_bind_mode_data_coding_and_tls_are_checked() {
        let s = Settings::from_config(&config()).unwrap();
        assert_eq!(
            (s.id_format, s.bind_mode, s.text_coding, s.tls.is_some()),
            (
                IdFormat::Auto,
                BindMode::Transceiver,
                TextCoding::Gsm7,
                false
            )
        );
        assert_eq!(s.url, "smpp://127.0.0.1:2775");
        let mut c = config();
        c.message_id_format = Some("hex_to_decimal".into());
        c.bind_mode = Some("transmitter_receiver".into());
        c.data_coding = Some("latin1".into());
        c.tls = Some("tls".into());
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(
            (s.id_format, s.bind_mode, s.text_coding),
            (
                IdFormat::HexToDecimal,
                BindMode::TransmitterReceiver,
                TextCoding::Latin1
            )
        );
        assert_eq!(s.url, "smpps://127.0.0.1:2775");
        for (key, value, needle) in [
            ("message_id_format", "hex", "message_id_format must be"),
            ("bind_mode", "receiver", "bind_mode must be"),
            ("data_coding", "8", "data_coding must be"),
            ("tls", "starttls", "tls must be"),
        ] {
            let mut c = config();
            match key {
                "message_id_format" => c.message_id_format = Some(value.into()),
                "bind_mode" => c.bind_mode = Some(value.into()),
                "data_coding" => c.data_coding = Some(value.into()),
                _ => c.tls = Some(value.into()),
            }
            let err = Settings::from_config(&c).unwrap_err();
            assert!(err.contains(needle) && err.contains("'smsc'"), "{err}");
        }
        let mut c = config();
        c.tls_ca_file = Some("/nonexistent/ca.pem".into());
        assert!(
            Settings::from_config(&c)
                .unwrap_err()
                .contains("tls_ca_file")
        );
        c.tls = Some("tls".into());
        assert!(
            Settings::from_config(&c)
                .unwrap_err()
                .contains("/nonexistent/ca.pem")
        );
    }
}

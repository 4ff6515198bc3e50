//! Recipients: phone numbers normalized to E.164, and email addresses.
//!
//! Parsing happens once, at the edge; the rest of otpd only sees these types.

use std::str::FromStr;

use crate::DomainError;
use crate::channel::{Channel, truncate};

/// Longest input accepted as a phone number before parsing (E.164 has at most 15 digits;
/// room is left for spaces, dashes and parentheses).
const MAX_PHONE_INPUT: usize = 40;
/// Most digits an E.164 number has after the `+` (ITU-T E.164, section 6).
const MAX_E164_DIGITS: usize = 15;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL: usize = 254;

/// What kind of line a number is, as the phone metadata tells it from the number alone
/// (no carrier lookup: in some regions, e.g. the US, fixed and mobile cannot be told apart).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LineType {
    /// A mobile number.
    Mobile,
    /// A fixed (landline) number.
    #[serde(rename = "landline", alias = "fixed_line")]
    FixedLine,
    /// Either; the numbering plan does not tell (US, CA, …).
    FixedLineOrMobile,
    /// Voice over IP.
    Voip,
    /// Freephone.
    TollFree,
    /// Premium rate: the caller (here, the service) pays the owner a share; the classic
    /// SMS-pumping target.
    PremiumRate,
    /// Shared cost: priced above a normal call.
    SharedCost,
    /// Universal access number (a company's single number, routed anywhere).
    Uan,
    /// A pager.
    Pager,
    /// A personal number (forwarded to wherever its owner is).
    PersonalNumber,
    /// Another known kind (voicemail, short code, carrier-specific, …).
    Other,
    /// The metadata does not say.
    Unknown,
}

impl LineType {
    /// A short wire name (`mobile`, `landline`, `fixed_line_or_mobile`, `voip`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LineType::Mobile => "mobile",
            LineType::FixedLine => "landline",
            LineType::FixedLineOrMobile => "fixed_line_or_mobile",
            LineType::Voip => "voip",
            LineType::TollFree => "toll_free",
            LineType::PremiumRate => "premium_rate",
            LineType::SharedCost => "shared_cost",
            LineType::Uan => "uan",
            LineType::Pager => "pager",
            LineType::PersonalNumber => "personal_number",
            LineType::Other => "other",
            LineType::Unknown => "unknown",
        }
    }

    fn of(t: phonenumber::Type) -> Self {
        use phonenumber::Type;
        match t {
            Type::Mobile => LineType::Mobile,
            Type::FixedLine => LineType::FixedLine,
            Type::FixedLineOrMobile => LineType::FixedLineOrMobile,
            Type::Voip => LineType::Voip,
            Type::TollFree => LineType::TollFree,
            Type::PremiumRate => LineType::PremiumRate,
            Type::SharedCost => LineType::SharedCost,
            Type::Uan => LineType::Uan,
            Type::Pager => LineType::Pager,
            Type::PersonalNumber => LineType::PersonalNumber,
            Type::Unknown => LineType::Unknown,
            _ => LineType::Other,
        }
    }
}

/// A valid phone number in E.164 form, with its region when the metadata knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    region: Option<String>,
    line_type: LineType,
}

impl PhoneNumber {
    /// Parses a number in any common format. A number without a leading `+` needs the
    /// ISO 3166 `country` it is written for (national format, e.g. `024 123 4567` in GH).
    pub fn parse(input: &str, country: Option<&str>) -> Result<Self, DomainError> {
        let invalid = || {
            DomainError::InvalidPhoneNumber(format!(
                "'{}' is not a valid phone number",
                truncate(input)
            ))
        };
        let parsed = Self::parse_structure(input, country)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(invalid());
        }
        let number = Self::from_parsed(&parsed, input)?;
        // libphonenumber can call a number valid in the form it was written (say, dialled
        // through a region's international prefix) and refuse its own E.164 form: such a
        // number would be stored under a `to` that a later check could not name.
        match phonenumber::parse(None, number.e164()) {
            Ok(again) if phonenumber::is_valid(&again) => Ok(number),
            _ => Err(invalid()),
        }
    }

    /// Parses a number's structure without checking that its range is allocated
    /// (used for configured test numbers such as `+15005550006`).
    pub fn parse_possible(input: &str, country: Option<&str>) -> Result<Self, DomainError> {
        Self::from_parsed(&Self::parse_structure(input, country)?, input)
    }

    fn parse_structure(
        input: &str,
        country: Option<&str>,
    ) -> Result<phonenumber::PhoneNumber, DomainError> {
        let invalid =
            |why: &str| DomainError::InvalidPhoneNumber(format!("'{}' {why}", truncate(input)));
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_PHONE_INPUT {
            return Err(invalid("is not a phone number"));
        }
        // Vanity letters (1-800-FLOWERS) are never what an OTP request means.
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().\u{a0}/".contains(c))
        {
            return Err(invalid("is not a phone number"));
        }
        let region = match country {
            Some(code) => Some(
                phonenumber::country::Id::from_str(&code.trim().to_ascii_uppercase()).map_err(
                    |_| {
                        DomainError::InvalidRequest(format!(
                            "'{}' is not an ISO 3166 country code",
                            truncate(code)
                        ))
                    },
                )?,
            ),
            None if !trimmed.starts_with('+') => {
                return Err(invalid(
                    "has no country calling code: write it with a leading + or give \"country\"",
                ));
            }
            None => None,
        };
        phonenumber::parse(region, trimmed).map_err(|_| invalid("is not a phone number"))
    }

    /// The E.164 form of a parsed number. The parser takes national numbers of up to 17
    /// digits, and the metadata of some regions (DE) calls such numbers valid; E.164 stops
    /// at 15 digits after the `+`.
    fn from_parsed(parsed: &phonenumber::PhoneNumber, input: &str) -> Result<Self, DomainError> {
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if e164.len() - 1 > MAX_E164_DIGITS {
            return Err(DomainError::InvalidPhoneNumber(format!(
                "'{}' has more digits than a phone number can",
                truncate(input)
            )));
        }
        Ok(PhoneNumber {
            e164,
            region: parsed.country().id().map(|id| id.as_ref().to_string()),
            line_type: LineType::of(parsed.number_type(&phonenumber::metadata::DATABASE)),
        })
    }

    /// The kind of line, from the phone metadata.
    pub fn line_type(&self) -> LineType {
        self.line_type
    }

    /// The number in E.164 form, e.g. `+14155550123`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The ISO 3166 region of the number (`US`, `GH`), when known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

/// The country recorded for recipients without one (email addresses, numbers of no
/// region): `ZZ`, ISO 3166's user-assigned code for an unknown region. Metrics and the
/// dashboard's statistics both use it.
pub const UNKNOWN_COUNTRY: &str = "ZZ";

/// Whether `code` is an ISO 3166-1 alpha-2 region otpd knows numbers of (`US`, `GH`; upper
/// case, as numbers' regions are written), for configuration checks (`USA` and `us` are not).
pub fn is_region_code(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && phonenumber::metadata::DATABASE.by_id(code).is_some()
}

/// A syntactically valid email address, with its domain lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address (`local@domain`); the domain is lower-cased, the local part kept.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        let invalid = || {
            DomainError::InvalidRequest(format!("'{}' is not an email address", truncate(input)))
        };
        if trimmed.len() > MAX_EMAIL || !email_address::EmailAddress::is_valid(trimmed) {
            return Err(invalid());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
        if !domain.contains('.') {
            return Err(invalid());
        }
        Ok(EmailAddress(format!(
            "{local}@{}",
            domain.to_ascii_lowercase()
        )))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whom a code is for: a phone number or, for the email channel, an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A phone number (sms, voice, whatsapp, ussd).
    Phone(PhoneNumber),
    /// An email address (email).
    Email(EmailAddress),
}

impl Recipient {
    /// Parses `to` as the kind of address the channel needs.
    pub fn parse_for(
        channel: Channel,
        to: &str,
        country: Option<&str>,
    ) -> Result<Self, DomainError> {
        if channel.addresses_phone() {
            PhoneNumber::parse(to, country).map(Recipient::Phone)
        } else {
            EmailAddress::parse(to).map(Recipient::Email)
        }
    }

    /// The normalized address (E.164 or email).
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Phone(p) => p.e164(),
            Recipient::Email(e) => e.as_str(),
        }
    }

    /// The region of a phone recipient.
    pub fn region(&self) -> Option<&str> {
        match self {
            Recipient::Phone(p) => p.region(),
            Recipient::Email(_) => None,
        }
    }

    /// The line type of a phone recipient.
    pub fn line_type(&self) -> Option<LineType> {
        match self {
            Recipient::Phone(p) => Some(p.line_type()),
            Recipient::Email(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn region_codes_are_two_capital_letters_of_a_known_region() {
        for ok in ["US", "GH", "GB", "FR", "CA"] {
            assert!(is_region_code(ok), "{ok}");
        }
        for bad in ["USA", "us", "ZZ", "U", "", "001", "XX"] {
            assert!(!is_region_code(bad), "{bad}");
        }
    }

    #[test]
    fn a_number_whose_e164_form_is_not_valid_is_refused() {
        // Found by the phone_parse fuzz target: valid as written with GB's international
        // prefix, while its E.164 form is not.
        assert!(PhoneNumber::parse("0070878332.7400", Some("GB")).is_err());
        let ok = PhoneNumber::parse("020 7946 0958", Some("GB")).unwrap();
        assert_eq!(
            PhoneNumber::parse(ok.e164(), None).unwrap().e164(),
            ok.e164()
        );
    }

    #[test]
    fn normalizes_international_and_national_formats() {
        let us = PhoneNumber::parse("+1 (415) 555-0123", None).unwrap();
        assert_eq!(us.e164(), "+14155550123");
        assert_eq!(us.region(), Some("US"));
        let gh = PhoneNumber::parse("024 123 4567", Some("gh")).unwrap();
        assert_eq!(gh.e164(), "+233241234567");
        assert_eq!(gh.region(), Some("GH"));
        let uk = PhoneNumber::parse("07400 123456", Some("GB")).unwrap();
        assert_eq!(uk.e164(), "+447400123456");
    }

    #[test]
    fn rejects_invalid_numbers() {
        for bad in [
            "",
            "+1 555",
            "hello",
            "+999123456789",
            "1-800-FLOWERS",
            "0241234567",
        ] {
            assert!(
                matches!(
                    PhoneNumber::parse(bad, None),
                    Err(DomainError::InvalidPhoneNumber(_))
                ),
                "{bad} should be rejected"
            );
        }
        assert!(matches!(
            PhoneNumber::parse("0241234567", Some("XX")),
            Err(DomainError::InvalidRequest(_))
        ));
    }

    #[test]
    fn line_types_come_from_the_metadata() {
        let landline = PhoneNumber::parse("+44 20 7946 0018", None).unwrap();
        assert_eq!(landline.line_type(), LineType::FixedLine);
        let mobile = PhoneNumber::parse("+447400123456", None).unwrap();
        assert_eq!(mobile.line_type(), LineType::Mobile);
        let us = PhoneNumber::parse("+14155550123", None).unwrap();
        assert_eq!(us.line_type(), LineType::FixedLineOrMobile);
        assert_eq!(LineType::FixedLine.as_str(), "landline");
    }

    #[test]
    fn test_numbers_parse_as_possible() {
        let p = PhoneNumber::parse_possible("+15005550006", None).unwrap();
        assert_eq!(p.e164(), "+15005550006");
    }

    /// Found by the `phone_parse` fuzz target: a 14-digit national number written for GB
    /// made a 16-digit "E.164" form, and a 15-digit German one a 17-digit "valid" number.
    #[test]
    fn numbers_stop_at_15_digits() {
        assert!(matches!(
            PhoneNumber::parse("+(49(030(401(7(79527- (4(7(01 ", None),
            Err(DomainError::InvalidPhoneNumber(_))
        ));
        assert!(matches!(
            PhoneNumber::parse_possible("6007872 4123456", Some("GB")),
            Err(DomainError::InvalidPhoneNumber(_))
        ));
        assert!(matches!(
            PhoneNumber::parse_possible("+4460078724123456", None),
            Err(DomainError::InvalidPhoneNumber(_))
        ));
        let longest = PhoneNumber::parse_possible("+442079460000123", None);
        assert!(longest.is_ok_and(|p| p.e164().len() == 16));
    }

    #[test]
    fn emails_are_checked_and_domain_lowercased() {
        assert_eq!(
            EmailAddress::parse("Alice@Example.COM").unwrap().as_str(),
            "Alice@example.com"
        );
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert!(EmailAddress::parse("a@localhost").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_output_is_e164(s in "\\PC{0,50}") {
            for p in [PhoneNumber::parse(&s, None), PhoneNumber::parse_possible(&s, None)]
                .into_iter()
                .flatten()
            {
                prop_assert!(p.e164().starts_with('+'));
                prop_assert!(p.e164()[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(p.e164().len() <= 16);
            }
        }

        #[test]
        fn formatting_variants_normalize_identically(sep in "[ .-]{0,1}") {
            let s = format!("+1{sep}415{sep}555{sep}0123");
            let p = PhoneNumber::parse(&s, None).unwrap();
            prop_assert_eq!(p.e164(), "+14155550123");
        }
    }
}

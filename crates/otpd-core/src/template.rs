//! Message templates: `{code}`, `{service}` and `{minutes}` placeholders, per locale,
//! plus the optional Android SMS Retriever and WebOTP lines.

use zeroize::Zeroizing;

/// The default English message.
pub const DEFAULT_TEMPLATE: &str = "Your {service} verification code is {code}. It expires in {minutes} minutes. Don't share it with anyone.";

/// Built-in translations of the default message, by language: the message, then the
/// "don't share" warning sentence that follows it (a service may turn the warning off, as
/// Twilio's `DoNotShareWarningEnabled=false` does).
const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "en",
        "Your {service} verification code is {code}. It expires in {minutes} minutes.",
        " Don't share it with anyone.",
    ),
    (
        "fr",
        "Votre code de vérification {service} est {code}. Il expire dans {minutes} minutes.",
        " Ne le partagez avec personne.",
    ),
    (
        "es",
        "Tu código de verificación de {service} es {code}. Caduca en {minutes} minutos.",
        " No lo compartas con nadie.",
    ),
    (
        "pt",
        "O seu código de verificação {service} é {code}. Expira em {minutes} minutos.",
        " Não o partilhe com ninguém.",
    ),
    (
        "de",
        "Ihr {service}-Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab.",
        " Geben Sie ihn an niemanden weiter.",
    ),
    (
        "ar",
        "رمز التحقق الخاص بك في {service} هو {code}. تنتهي صلاحيته خلال {minutes} دقائق.",
        " لا تشاركه مع أي شخص.",
    ),
    (
        "hi",
        "आपका {service} सत्यापन कोड {code} है। यह {minutes} मिनट में समाप्त हो जाएगा।",
        " इसे किसी के साथ साझा न करें।",
    ),
    (
        "sw",
        "Nambari yako ya uthibitisho ya {service} ni {code}. Itaisha baada ya dakika {minutes}.",
        " Usimpe mtu yeyote.",
    ),
];

/// Built-in voice scripts by language: `{code}` is read digit by digit (see
/// [`spoken_digits`]) and the whole code is said twice.
const BUILT_IN_VOICE: &[(&str, &str)] = &[
    (
        "en",
        "Your {service} verification code is: {code}. Once again, your code is: {code}.",
    ),
    (
        "fr",
        "Votre code de vérification {service} est : {code}. Je répète, votre code est : {code}.",
    ),
    (
        "es",
        "Tu código de verificación de {service} es: {code}. Repito, tu código es: {code}.",
    ),
    (
        "pt",
        "O seu código de verificação {service} é: {code}. Repito, o seu código é: {code}.",
    ),
    (
        "de",
        "Ihr {service}-Bestätigungscode lautet: {code}. Noch einmal, Ihr Code lautet: {code}.",
    ),
    (
        "ar",
        "رمز التحقق الخاص بك في {service} هو: {code}. مرة أخرى، رمزك هو: {code}.",
    ),
    (
        "hi",
        "आपका {service} सत्यापन कोड है: {code}। फिर से, आपका कोड है: {code}।",
    ),
    (
        "sw",
        "Nambari yako ya uthibitisho ya {service} ni: {code}. Tena, nambari yako ni: {code}.",
    ),
];

/// Built-in email subjects by language (never containing the code: subjects show in
/// notification previews and mail logs).
const BUILT_IN_SUBJECT: &[(&str, &str)] = &[
    ("en", "Your {service} verification code"),
    ("fr", "Votre code de vérification {service}"),
    ("es", "Tu código de verificación de {service}"),
    ("pt", "O seu código de verificação {service}"),
    ("de", "Ihr {service}-Bestätigungscode"),
    ("ar", "رمز التحقق الخاص بك في {service}"),
    ("hi", "आपका {service} सत्यापन कोड"),
    ("sw", "Nambari yako ya uthibitisho ya {service}"),
];

/// Languages with built-in messages (SMS, voice and email subject).
pub const BUILT_IN_LANGUAGES: &[&str] = &["en", "fr", "es", "pt", "de", "ar", "hi", "sw"];

/// The built-in voice script for a locale (language fallback, then English).
pub fn built_in_voice(locale: &str) -> &'static str {
    pick(BUILT_IN_VOICE, locale)
}

/// The built-in email subject for a locale (language fallback, then English).
pub fn built_in_subject(locale: &str) -> &'static str {
    pick(BUILT_IN_SUBJECT, locale)
}

fn pick(table: &'static [(&'static str, &'static str)], locale: &str) -> &'static str {
    let language = language_of(locale);
    table
        .iter()
        .find(|(l, _)| *l == language)
        .unwrap_or(&table[0])
        .1
}

/// A code as a voice should read it: digit by digit, with a pause (comma) after each,
/// so a text-to-speech engine says "4, 8, 1, 5, 1, 6" and not "four hundred eighty-one
/// thousand…".
pub fn spoken_digits(code: &str) -> String {
    code.chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest template accepted in a service's configuration.
pub const MAX_TEMPLATE_LEN: usize = 1_000;

/// What a template is filled with.
pub struct MessageContext<'a> {
    /// The code in clear.
    pub code: &'a str,
    /// The service's display name.
    pub service: &'a str,
    /// Minutes until expiry, rounded up.
    pub minutes: u64,
    /// Android SMS Retriever app hash (11 characters), appended on its own line.
    pub app_hash: Option<&'a str>,
    /// WebOTP origin domain: adds the final line `@domain #code`.
    pub webotp_domain: Option<&'a str>,
}

/// The built-in template for a locale (`fr-CA` falls back to `fr`, unknown to English),
/// with its "don't share" warning.
pub fn built_in(locale: &str) -> String {
    built_in_with(locale, true)
}

/// The built-in template for a locale, with or without the "don't share" warning sentence.
pub fn built_in_with(locale: &str, warning: bool) -> String {
    let language = language_of(locale);
    let (_, message, warn) = BUILT_IN
        .iter()
        .find(|(l, _, _)| *l == language)
        .unwrap_or(&BUILT_IN[0]);
    if warning {
        format!("{message}{warn}")
    } else {
        (*message).to_string()
    }
}

/// The language part of a locale tag, lower-cased (`pt-BR` → `pt`).
pub fn language_of(locale: &str) -> String {
    locale
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Fills a template in one pass, so text inserted for a placeholder (a service name that
/// itself contains `{code}`) is never expanded again.
pub fn render(template: &str, ctx: &MessageContext<'_>) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(template.len() + 32));
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let (value, len): (Option<String>, usize) = if after.starts_with("{code}") {
            (Some(ctx.code.to_string()), 6)
        } else if after.starts_with("{service}") {
            (Some(ctx.service.to_string()), 9)
        } else if after.starts_with("{minutes}") {
            (Some(ctx.minutes.to_string()), 9)
        } else {
            (None, 1)
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push('{'),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    if let Some(hash) = ctx.app_hash {
        out.push('\n');
        out.push_str(hash);
    }
    if let Some(domain) = ctx.webotp_domain {
        out.push_str(&format!("\n\n@{domain} #{}", ctx.code));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(service: &'a str) -> MessageContext<'a> {
        MessageContext {
            code: "123456",
            service,
            minutes: 10,
            app_hash: None,
            webotp_domain: None,
        }
    }

    #[test]
    fn renders_the_default_message() {
        assert_eq!(
            render(DEFAULT_TEMPLATE, &ctx("Acme")).as_str(),
            "Your Acme verification code is 123456. It expires in 10 minutes. Don't share it with anyone."
        );
    }

    #[test]
    fn inserted_text_is_not_expanded_again() {
        let out = render("{service}: {code} {unknown} {", &ctx("{code}"));
        assert_eq!(out.as_str(), "{code}: 123456 {unknown} {");
    }

    #[test]
    fn adds_retriever_and_webotp_lines() {
        let c = MessageContext {
            app_hash: Some("FA+9qCX9VSu"),
            webotp_domain: Some("example.com"),
            ..ctx("Acme")
        };
        let out = render("Code {code}", &c);
        assert_eq!(
            out.as_str(),
            "Code 123456\nFA+9qCX9VSu\n\n@example.com #123456"
        );
    }

    #[test]
    fn locales_fall_back_to_language_then_english() {
        assert!(built_in("fr-CA").starts_with("Votre"));
        assert!(built_in("pt_BR").starts_with("O seu"));
        assert_eq!(built_in("xx"), DEFAULT_TEMPLATE);
    }

    #[test]
    fn every_built_in_language_has_all_three_texts() {
        for lang in BUILT_IN_LANGUAGES {
            let sms = built_in(lang);
            assert!(
                sms.contains("{code}") && sms.contains("{service}"),
                "{lang}"
            );
            assert!(
                *lang == "en" || sms != DEFAULT_TEMPLATE,
                "{lang} falls back to English"
            );
            let voice = built_in_voice(lang);
            assert_eq!(voice.matches("{code}").count(), 2, "{lang}: said twice");
            assert!(*lang == "en" || voice != BUILT_IN_VOICE[0].1, "{lang}");
            let subject = built_in_subject(lang);
            assert!(!subject.contains("{code}"), "{lang}");
            assert!(*lang == "en" || subject != BUILT_IN_SUBJECT[0].1, "{lang}");
        }
        assert!(built_in("sw-KE").starts_with("Nambari"));
        assert!(built_in_voice("ar-EG").starts_with("رمز"));
    }

    #[test]
    fn digits_are_spoken_one_by_one() {
        assert_eq!(spoken_digits("481516"), "4, 8, 1, 5, 1, 6");
        assert_eq!(spoken_digits("7"), "7");
    }

    #[test]
    fn the_warning_sentence_can_be_left_out() {
        assert_eq!(built_in("en"), DEFAULT_TEMPLATE);
        let plain = built_in_with("en-GB", false);
        assert!(plain.ends_with("{minutes} minutes."), "{plain}");
        assert!(!plain.contains("share"));
        assert!(!built_in_with("fr", false).contains("partagez"));
    }
}

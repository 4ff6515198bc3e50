//! Masking of personal data for logs and listings (`+1******2671`, `a***@example.com`).

/// Masks a phone number or email address, keeping just enough to tell entries apart.
pub fn mask_recipient(to: &str) -> String {
    if let Some((local, domain)) = to.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = to.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_numbers_and_emails() {
        assert_eq!(mask_recipient("+14155552671"), "+1******2671");
        assert_eq!(mask_recipient("alice@example.com"), "a***@example.com");
        assert_eq!(mask_recipient("123"), "***");
    }
}

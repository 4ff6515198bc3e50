//! What a `submit_sm_resp` error status means for the worker: transient (the SMSC is busy
//! or broken: retry, then fail over) or permanent (this message cannot go: the next
//! provider gets it at once). Status codes from SMPP 3.4 §5.1.3.

use crate::provider::ProviderError;

/// Statuses worth retrying: the SMSC is throttling, full, failing, or the session is in a
/// bad state.
const TRANSIENT: &[u32] = &[
    0x0004, // ESME_RINVBNDSTS: the bind is not (yet) in a state to submit
    0x0008, // ESME_RSYSERR: system error
    0x0014, // ESME_RMSGQFUL: message queue full
    0x0045, // ESME_RSUBMITFAIL: submit_sm failed
    0x0058, // ESME_RTHROTTLED: throttling error
    0x0064, // ESME_RX_T_APPN: temporary application error
];

/// The SMPP name of a status, for errors and logs.
pub fn name(status: u32) -> &'static str {
    match status {
        0x0000 => "ESME_ROK",
        0x0001 => "ESME_RINVMSGLEN",
        0x0002 => "ESME_RINVCMDLEN",
        0x0003 => "ESME_RINVCMDID",
        0x0004 => "ESME_RINVBNDSTS",
        0x0005 => "ESME_RALYBND",
        0x0008 => "ESME_RSYSERR",
        0x000A => "ESME_RINVSRCADR",
        0x000B => "ESME_RINVDSTADR",
        0x000D => "ESME_RBINDFAIL",
        0x000E => "ESME_RINVPASWD",
        0x000F => "ESME_RINVSYSID",
        0x0014 => "ESME_RMSGQFUL",
        0x0015 => "ESME_RINVSERTYP",
        0x0043 => "ESME_RINVESMCLASS",
        0x0045 => "ESME_RSUBMITFAIL",
        0x0048 => "ESME_RINVSRCTON",
        0x0049 => "ESME_RINVSRCNPI",
        0x0050 => "ESME_RINVDSTTON",
        0x0051 => "ESME_RINVDSTNPI",
        0x0058 => "ESME_RTHROTTLED",
        0x0062 => "ESME_RINVEXPIRY",
        0x0063 => "ESME_RINVDFTMSGID",
        0x0064 => "ESME_RX_T_APPN",
        0x0065 => "ESME_RX_P_APPN",
        0x0066 => "ESME_RX_R_APPN",
        0x00FE => "ESME_RDELIVERYFAILURE",
        0x00FF => "ESME_RUNKNOWNERR",
        _ => "vendor-specific",
    }
}

/// The worker's view of a `submit_sm_resp` error. Statuses not known to be transient are
/// permanent: an SMSC that refuses for a reason otpd cannot name is not asked again, the
/// next provider is.
pub fn classify(status: u32) -> ProviderError {
    let text = format!("SMSC answered {} (0x{status:08X})", name(status));
    if TRANSIENT.contains(&status) {
        ProviderError::Transient(text)
    } else {
        ProviderError::Permanent(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_system_errors_are_transient_bad_addresses_permanent() {
        for s in [0x58, 0x14, 0x08, 0x45, 0x64, 0x04] {
            assert!(matches!(classify(s), ProviderError::Transient(_)), "{s:#x}");
        }
        for s in [0x0B, 0x0A, 0x01, 0x65, 0x66, 0x0400] {
            assert!(matches!(classify(s), ProviderError::Permanent(_)), "{s:#x}");
        }
        assert_eq!(
            classify(0x0B),
            ProviderError::Permanent("SMSC answered ESME_RINVDSTADR (0x0000000B)".into())
        );
    }
}

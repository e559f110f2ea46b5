//! What both QR endpoints share: reading the request, choosing the error-correction level,
//! and failing the way every mewe service does (one line on stderr, exit status 2).

use std::io::Read;

use qrcode::{EcLevel, QrCode};

/// Prints `message` as the one line a bad request gets and exits with status 2.
pub fn fail(message: &str) -> ! {
    eprintln!("{}", message);
    std::process::exit(2)
}

/// The request body: the data to encode.
pub fn read_request() -> Vec<u8> {
    let mut data = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut data) {
        fail(&format!("cannot read the request: {}", err));
    }
    if data.is_empty() {
        fail("the request body is empty: send the data to encode");
    }
    data
}

/// The error-correction level named by the first argument (L, M, Q or H; M by default).
pub fn ec_level() -> EcLevel {
    match std::env::args().nth(1).as_deref() {
        None | Some("M") | Some("m") => EcLevel::M,
        Some("L") | Some("l") => EcLevel::L,
        Some("Q") | Some("q") => EcLevel::Q,
        Some("H") | Some("h") => EcLevel::H,
        Some(other) => fail(&format!("unknown error-correction level '{}' (use L, M, Q or H)", other)),
    }
}

/// The QR code of the request at the requested level.
pub fn encode_request() -> QrCode {
    let data = read_request();
    match QrCode::with_error_correction_level(&data, ec_level()) {
        Ok(code) => code,
        Err(err) => fail(&format!("cannot encode {} bytes: {}", data.len(), err)),
    }
}

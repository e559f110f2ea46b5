//! qr_str: the request body as a QR code drawn in text, two characters per module.

use mewe_qr_service::encode_request;

fn main() {
    let code = encode_request();
    let text = code.render::<char>().dark_color('#').light_color(' ').module_dimensions(2, 1).build();
    println!("{}", text);
}

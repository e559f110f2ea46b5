//! qr_image: the request body as a QR code in an SVG image.

use mewe_qr_service::encode_request;
use qrcode::render::svg;

fn main() {
    let code = encode_request();
    let image = code.render::<svg::Color>().min_dimensions(200, 200).build();
    println!("{}", image);
}

//! Prints what the engine detects for user agents given on the command line (or one per line on
//! stdin): `cargo run -p matomo-device-detector --example detect -- REGEXES_DIR [UA…]`.

use std::io::BufRead;

use matomo_device_detector::{ClientHints, DeviceDetector};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!(
            "usage: detect REGEXES_DIR [USER_AGENT…]  (user agents from stdin when none given)"
        );
        std::process::exit(2);
    };
    let dd = match DeviceDetector::from_dir(dir.as_ref()) {
        Ok(dd) => dd,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mut uas: Vec<String> = args.collect();
    if uas.is_empty() {
        uas = std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect();
    }
    for ua in uas {
        let d = dd.detect(&ua, &ClientHints::default());
        println!("{ua}\n  {d:?}\n  {:?}", d.matomo_columns());
    }
}

//! The console page: HTML, CSS and JavaScript embedded in the binary at build time
//! (`include_str!` of `assets/`), put together once, with a content security policy that allows
//! exactly that style and that script (by their SHA-256) and connections to this origin only.
//! Plain HTML/CSS/JS: no build step, nothing fetched from anywhere else.

use std::sync::OnceLock;

use base64::Engine as _;

const HTML: &str = include_str!("assets/console.html");
const STYLE: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The page, ready to serve.
pub struct Page {
    pub html: Vec<u8>,
    pub content_security_policy: String,
}

fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

impl Page {
    pub fn get() -> &'static Page {
        static PAGE: OnceLock<Page> = OnceLock::new();
        PAGE.get_or_init(|| {
            let html = HTML
                .replace("/*STYLE*/", STYLE)
                .replace("/*SCRIPT*/", SCRIPT);
            let content_security_policy = format!(
                "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                sha256_source(SCRIPT),
                sha256_source(STYLE)
            );
            Page {
                html: html.into_bytes(),
                content_security_policy,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_and_allows_exactly_them() {
        let page = Page::get();
        let html = std::str::from_utf8(&page.html).unwrap();
        assert!(html.contains(SCRIPT) && html.contains(STYLE));
        assert!(!html.contains("/*SCRIPT*/") && !html.contains("/*STYLE*/"));
        // Nothing from elsewhere: no URL but the SVG namespace, no protocol-relative one.
        let urls = html.matches("http://").count() + html.matches("https://").count();
        let namespace = html.matches("\"http://www.w3.org/2000/svg\"").count();
        assert_eq!(urls, namespace, "the page refers to another site");
        // The only link: an empty icon, so the browser asks for no favicon.
        assert_eq!(html.matches("href=").count(), 1);
        assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
        for needle in ["src=", "@import", "//cdn"] {
            assert!(!html.contains(needle), "the page loads something: {needle}");
        }
        // url() only for markers inside the page's own SVG.
        assert_eq!(html.matches("url(").count(), html.matches("url(#").count());
        assert_eq!(page.content_security_policy.matches("'sha256-").count(), 2);
        // The hash of the empty string is well known: the encoding is standard base64.
        assert_eq!(
            sha256_source(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }
}

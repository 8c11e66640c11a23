//! How upstreams read paths, for the tests and fuzz targets that check what the router
//! forwards (through `crate::fuzzing`): never used on traffic.

/// A lenient percent-decoder, as upstreams have (a test oracle for path handling): `%XX` decoded, anything else (a lone `%`) kept.
pub fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: Option<&u8>| c.and_then(|c| char::from(*c).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.extend(u8::try_from(h << 4 | l).ok());
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

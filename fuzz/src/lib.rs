//! What the fuzz targets share: cutting a stream into the pieces a read
//! loop would get, so a target can check that arrival in pieces changes
//! nothing.

/// Splits `stream` into chunks of the given sizes in turn, the rest last.
/// A size of 0 is a read that brought nothing; all-zero sizes (which
/// would never make progress) give the stream whole.
pub fn chunks<'a>(sizes: &[u8], mut stream: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    if sizes.iter().any(|&size| size != 0) {
        for &size in sizes.iter().cycle() {
            if stream.is_empty() {
                break;
            }
            let (chunk, rest) = stream.split_at(usize::from(size).min(stream.len()));
            out.push(chunk);
            stream = rest;
        }
    }
    out.push(stream);
    out
}

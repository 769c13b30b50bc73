//! Header values from numbers: small ones from a static table, the rest
//! with [`HeaderValue::from`].
//!
//! `HeaderValue::from(u64)` allocates for every value (it formats into a
//! fresh `Bytes`). The numbers of a usual response are small (the
//! `Remaining`, `Reset` and `Retry-After` of a limit), and three of them go
//! on every response: the table saves their allocations (measured side by
//! side in `benches/layer.rs`, group `header_number`; the figures are in
//! `BENCHMARKS.md`, section Tower layer). Large numbers cost the same either way: they go to
//! `HeaderValue::from`.

use http::header::HeaderValue;

/// The numbers below this have a static header value.
const STATIC_NUMBERS: usize = 1024;

/// The decimal digits of `0..STATIC_NUMBERS`, left-aligned.
static DIGITS: [[u8; 4]; STATIC_NUMBERS] = {
    let mut table = [[0u8; 4]; STATIC_NUMBERS];
    let mut n = 0;
    while n < STATIC_NUMBERS {
        let (mut rest, mut len) = (n, 1);
        while rest >= 10 {
            rest /= 10;
            len += 1;
        }
        let (mut rest, mut i) = (n, len);
        while i > 0 {
            i -= 1;
            table[n][i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        n += 1;
    }
    table
};

/// `n` as a header value; small numbers without allocating.
#[inline]
pub(crate) fn number(n: u64) -> HeaderValue {
    if let Some(digits) = usize::try_from(n).ok().and_then(|i| DIGITS.get(i)) {
        let len = digits.iter().take_while(|&&d| d != 0).count();
        if let Ok(digits) = std::str::from_utf8(&digits[..len]) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_with_or_without_the_table() {
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 1023, 1024, 12345, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n));
        }
    }
}

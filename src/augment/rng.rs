//! Per-sample randomness derived from (seed, epoch, index, view): the same config gives the same
//! batches whatever the thread count or the order in which workers pick samples.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64 finaliser: a well-mixed 64-bit hash step.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for one view of one sample in one epoch.
pub fn sample_rng(seed: u64, epoch: u64, index: u64, view: u64) -> ChaCha8Rng {
    let key = mix(mix(mix(mix(seed) ^ epoch) ^ index) ^ view);
    ChaCha8Rng::seed_from_u64(key)
}

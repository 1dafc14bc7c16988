//! `weights`: `.safetensors` bytes read by `Tensors::from_bytes`, then imported by
//! `LstmWeights::from_tensors` in every convention for the spec of a 13-byte header
//! ([`SpecHeader`]).
//!
//! Input: the header, then the file. Besides "no panic", two round trips are checked:
//! tensors read from a file write back and read back the same, and weights loaded in any
//! convention export to TensorFlow's and load back the same. Loaded weights also run one
//! small forward pass (reference and fast engine), which must succeed.

use lstm_kernels::{
    reference, Convention, ForwardInput, Lstm, LstmOptions, LstmWeights, Tensors, Workspace,
};

use super::{parsed_fixtures, same_tensors, weights_file, SpecHeader, CONVENTIONS};
use crate::rng::Rng;
use crate::{mutate, Corpus};

/// Runs one input (see the module's doc).
pub fn run(data: &[u8]) {
    let header = SpecHeader::decode(data);
    let file = &data[data.len().min(SpecHeader::LEN)..];
    let Ok(tensors) = Tensors::from_bytes(file) else {
        return;
    };
    if let Ok(bytes) = tensors.to_bytes() {
        let back = Tensors::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("Tensors::to_bytes wrote a file it cannot read: {e}"));
        if let Err(e) = same_tensors(&tensors, &back) {
            panic!("safetensors round trip changed the tensors: {e}");
        }
    }
    let Ok(spec) = header.build() else {
        return;
    };
    let first = header.convention();
    for convention in std::iter::once(first).chain(CONVENTIONS.into_iter().filter(|&c| c != first))
    {
        if let Ok(w) = LstmWeights::from_tensors(&spec, &tensors, convention) {
            check_loaded(&w);
        }
    }
}

fn check_loaded(w: &LstmWeights) {
    let spec = w.spec();
    let tf = w.to_tensorflow();
    let back = LstmWeights::from_tensors(spec, &tf, Convention::TensorFlow)
        .unwrap_or_else(|e| panic!("weights' own TensorFlow export does not load: {e}"));
    if let Err(e) = same_tensors(&tf, &back.to_tensorflow()) {
        panic!("TensorFlow export round trip changed the weights: {e}");
    }
    let _ = w.to_pytorch();

    let (batch, steps) = (2, 3);
    let x = vec![0.25; batch * steps * spec.input_size()];
    let lengths = [3, 1];
    let input = ForwardInput::new(&x, batch, steps).sequence_length(&lengths);
    let mut ws = Workspace::new(spec, batch, steps);
    reference::forward(w, &input, &mut ws)
        .unwrap_or_else(|e| panic!("reference forward refused a valid input: {e}"));
    let options = LstmOptions {
        threads: Some(1),
        pin_threads: Some(false),
        ..Default::default()
    };
    let lstm = Lstm::with_options(w.clone(), options)
        .unwrap_or_else(|e| panic!("Lstm::with_options refused loaded weights: {e}"));
    lstm.forward_inference(&input, &mut ws)
        .unwrap_or_else(|e| panic!("forward_inference refused a valid input: {e}"));
}

/// Makes one input: a header and a file, synthesised for the header's spec, taken from
/// a fixture (with the header of its spec), or random; then damaged.
pub fn generate(rng: &mut Rng, corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let fixtures = parsed_fixtures(corpus);
    let (header, mut file) = match rng.below(10) {
        0..=4 => {
            let header = SpecHeader::random_small(rng);
            let file = match header.build() {
                Ok(spec) => {
                    let names = super::convention_names(&spec);
                    let convention = if rng.chance(7, 8) {
                        header.convention()
                    } else {
                        *rng.pick(&CONVENTIONS)
                    };
                    let mut f = weights_file(&spec, convention, rng.u64());
                    for _ in 0..rng.below(4) {
                        f.mutate(rng, &names, &[]);
                    }
                    f.to_bytes()
                }
                Err(_) => rng.some_bytes(256),
            };
            (header, file)
        }
        5..=7 if !fixtures.is_empty() => {
            let fx = rng.pick(fixtures);
            let mut header = match &fx.case {
                Some((spec, convention)) => SpecHeader::of_spec(spec, *convention),
                None => SpecHeader::random_small(rng),
            };
            if rng.chance(1, 4) {
                let mut b = header.encode();
                b[rng.below(SpecHeader::LEN)] = rng.u64() as u8;
                header = SpecHeader::decode(&b);
            }
            let mut f = fx.file.clone();
            let names = header
                .build()
                .map(|s| super::convention_names(&s))
                .unwrap_or_default();
            for _ in 0..rng.below(4) {
                f.mutate(rng, &names, &[]);
            }
            (header, f.to_bytes())
        }
        8 if !corpus.safetensors.is_empty() => {
            let (_, bytes) = rng.pick(&corpus.safetensors);
            (SpecHeader::random_small(rng), bytes.clone())
        }
        _ => (SpecHeader::decode(&rng.bytes(13)), rng.some_bytes(512)),
    };
    mutate::sometimes(&mut file, rng, max_len, 6);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&file);
    out.truncate(max_len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesised_inputs_load_in_their_convention() {
        // Unmutated synthesised files must load: otherwise the generator explores nothing.
        let mut rng = Rng::new(4);
        let mut loaded = 0;
        for i in 0..40 {
            let header = SpecHeader::random_small(&mut rng);
            let Ok(spec) = header.build() else { continue };
            let conv = CONVENTIONS[i % 4];
            let t = Tensors::from_bytes(&weights_file(&spec, conv, 1).to_bytes()).unwrap();
            let expressible = match conv {
                Convention::TensorFlow => true,
                Convention::PyTorch => {
                    !spec.use_peepholes()
                        && spec.cell_clip().is_none()
                        && (spec.proj_clip().is_none()
                            || spec.layers().iter().all(|l| l.proj_size.is_none()))
                }
                Convention::Keras => {
                    !spec.use_peepholes() && spec.layers().iter().all(|l| l.proj_size.is_none())
                }
                Convention::Onnx => spec.layers().iter().all(|l| l.proj_size.is_none()),
            };
            let got = LstmWeights::from_tensors(&spec, &t, conv);
            if expressible {
                got.unwrap_or_else(|e| panic!("{conv:?} {spec:?}: {e}"));
                loaded += 1;
            }
        }
        assert!(loaded >= 10, "only {loaded} synthesised files loaded");
    }

    #[test]
    fn header_round_trips() {
        let mut rng = Rng::new(2);
        for _ in 0..50 {
            let h = SpecHeader::random_small(&mut rng);
            assert_eq!(SpecHeader::decode(&h.encode()), h);
            if let Ok(spec) = h.build() {
                let again = SpecHeader::of_spec(&spec, h.convention()).build().unwrap();
                assert_eq!(again.layers(), spec.layers());
                assert_eq!(again.bidirectional(), spec.bidirectional());
            }
        }
    }
}

//! The timed loop: the harness's timing contract, in one place for every backend.
//!
//! Before the loop the input is placed once ([`Session::set_input`]). A sample is what
//! [`Timing`] says: [`Session::infer`] alone by default, or input placement + inference +
//! output read with `--timed-io`. The clock is read once per iteration and each sample is
//! the time between consecutive readings. The output is read after the loop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use mobilebench_backend::{BackendError, Session, Timing};

/// One iteration as the timing contract defines it.
pub fn iteration(
    session: &mut dyn Session,
    timing: Timing,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), BackendError> {
    match timing {
        Timing::Infer => session.infer(),
        Timing::InferWithIo => {
            session.set_input(input)?;
            session.infer()?;
            session.read_output(output)
        }
    }
}

/// What the timed loop measured.
pub struct Measured {
    pub samples_ns: Vec<u64>,
    /// GPU time of each timed run, when the session reports it for every run.
    pub gpu_ns: Option<Vec<u64>>,
}

/// Runs `warmup` untimed and `runs` timed iterations of a session whose input is placed.
/// `done` counts iterations for the progress reporter; `now` is the clock (a parameter so a
/// test can see exactly what happens between two readings).
#[allow(clippy::too_many_arguments)]
pub fn timed_loop(
    session: &mut dyn Session,
    timing: Timing,
    input: &[f32],
    output: &mut [f32],
    warmup: u32,
    runs: u32,
    done: &AtomicU32,
    now: &mut dyn FnMut() -> Instant,
) -> Result<Measured, BackendError> {
    for i in 0..warmup {
        iteration(session, timing, input, output)?;
        done.store(i + 1, Ordering::Relaxed);
    }
    let mut samples = vec![0u64; runs as usize];
    // GPU times, kept when the session reports them (after the warm-up, it either does or not).
    let mut gpu = session
        .last_device_time()
        .map(|_| Vec::with_capacity(runs as usize));
    let mut previous = now();
    for (i, sample) in samples.iter_mut().enumerate() {
        iteration(session, timing, input, output)?;
        let t = now();
        *sample = (t - previous).as_nanos() as u64;
        previous = t;
        if let (Some(g), Some(d)) = (gpu.as_mut(), session.last_device_time()) {
            g.push(d.as_nanos() as u64);
        }
        done.store(warmup + i as u32 + 1, Ordering::Relaxed);
    }
    Ok(Measured {
        samples_ns: samples,
        gpu_ns: gpu.filter(|g| g.len() == runs as usize),
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use mobilebench_backend::BackendSettings;

    use super::*;

    /// A session that writes every call into a log the clock writes into too.
    struct Logged(Rc<RefCell<Vec<&'static str>>>);

    impl Session for Logged {
        fn input_shape(&self) -> Vec<usize> {
            vec![1]
        }
        fn output_len(&self) -> usize {
            1
        }
        fn set_input(&mut self, _: &[f32]) -> Result<(), BackendError> {
            self.0.borrow_mut().push("set_input");
            Ok(())
        }
        fn infer(&mut self) -> Result<(), BackendError> {
            self.0.borrow_mut().push("infer");
            Ok(())
        }
        fn read_output(&mut self, _: &mut [f32]) -> Result<(), BackendError> {
            self.0.borrow_mut().push("read_output");
            Ok(())
        }
        fn settings(&self) -> BackendSettings {
            BackendSettings::default()
        }
    }

    /// What happens between the first and the last clock reading, per sample.
    fn timed_calls(timing: Timing) -> Vec<Vec<&'static str>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut session = Logged(log.clone());
        let clock_log = log.clone();
        let mut now = move || {
            clock_log.borrow_mut().push("clock");
            Instant::now()
        };
        let done = AtomicU32::new(0);
        let m = timed_loop(
            &mut session,
            timing,
            &[0.0],
            &mut [0.0],
            2,
            3,
            &done,
            &mut now,
        )
        .unwrap();
        assert_eq!(m.samples_ns.len(), 3);
        assert_eq!(done.load(Ordering::Relaxed), 5);
        let log = log.borrow();
        let first = log.iter().position(|c| *c == "clock").unwrap();
        log[first + 1..]
            .split(|c| *c == "clock")
            .filter(|s| !s.is_empty())
            .map(<[_]>::to_vec)
            .collect()
    }

    #[test]
    fn a_sample_holds_the_inference_alone() {
        assert_eq!(timed_calls(Timing::Infer), vec![vec!["infer"]; 3]);
    }

    #[test]
    fn timed_io_puts_input_and_output_in_every_sample() {
        assert_eq!(
            timed_calls(Timing::InferWithIo),
            vec![vec!["set_input", "infer", "read_output"]; 3]
        );
    }
}

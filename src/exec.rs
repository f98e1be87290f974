//! The executor the server's tasks run on: smol's tasks (`async-task`), run
//! from two queues, so that work the network brings in goes before work
//! other tasks make.
//!
//! A post wakes every stream of its room, a thousand tasks in one go. With
//! one first-in, first-out queue (smol's `Executor`), the poster's next
//! request, which the reactor reports a few microseconds later, waits
//! behind all of them: each stream then finds one message and writes it,
//! one `write(2)` per message and reader. Here a task woken by the reactor
//! (a socket ready, a timer due) or newly spawned goes to the **first**
//! queue, and a task woken by another task (a stream by a post, a post by a
//! stream that freed a slot) to the **second**: the next post is taken as
//! soon as it is read, and a stream, when its turn comes, finds the
//! messages posted meanwhile and writes them in one go. A quiet room is
//! not delayed: with nothing else to do, a stream runs at once.
//!
//! Neither queue starves the other: the two take turns, one task each (a
//! stream whose reader left is noticed while new connections keep
//! coming), and after each round of [`ROUND`] tasks the thread lets the
//! reactor look for new events without waiting (a yield to
//! `async_io::block_on`), which is also when new requests are seen.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use async_task::{Runnable, Task};
use concurrent_queue::ConcurrentQueue;
use event_listener::Event;
use futures_lite::{future, FutureExt};

/// Tasks run between two looks at the reactor.
const ROUND: usize = 64;

thread_local! {
    /// Whether this thread is running a task now: what that task wakes goes
    /// to the second queue.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Two queues of runnable tasks, shared by the threads that run them.
pub struct Executor {
    state: Arc<State>,
}

struct State {
    /// Woken by the reactor or another thread's I/O, or new.
    first: ConcurrentQueue<Runnable>,
    /// Woken by a task.
    second: ConcurrentQueue<Runnable>,
    /// Tells an idle thread that a task is ready.
    ready: Event,
}

impl State {
    /// Queues a woken task: the second queue when another task woke it.
    fn schedule(&self, runnable: Runnable) {
        let queue = if IN_TASK.with(Cell::get) {
            &self.second
        } else {
            &self.first
        };
        self.push(queue, runnable);
    }

    /// Queues `runnable` in `queue` (one of this state's) and tells an
    /// idle thread.
    fn push(&self, queue: &ConcurrentQueue<Runnable>, runnable: Runnable) {
        // Unbounded queues are never full, and never closed here.
        let _ = queue.push(runnable);
        self.ready.notify_additional(1);
    }
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// An executor with no tasks.
    pub fn new() -> Self {
        Executor {
            state: Arc::new(State {
                first: ConcurrentQueue::unbounded(),
                second: ConcurrentQueue::unbounded(),
                ready: Event::new(),
            }),
        }
    }

    /// Starts `future` as a task, in the first queue.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        let state = self.state.clone();
        let (runnable, task) = async_task::spawn(future, move |r| state.schedule(r));
        self.state.push(&self.state.first, runnable);
        task
    }

    /// Runs tasks on this thread until `future` completes. Call it inside
    /// `smol::block_on`, on as many threads as should run tasks.
    pub async fn run<T>(&self, future: impl Future<Output = T>) -> T {
        future.or(self.work()).await
    }

    /// Runs ready tasks, a round at a time, forever.
    async fn work<T>(&self) -> T {
        let state = &*self.state;
        loop {
            // One task from each queue in turn: what the reactor brings in
            // waits behind at most one task-woken task, and neither queue
            // can starve the other.
            let mut ran = 0;
            while ran < ROUND {
                let mut any = false;
                if let Ok(r) = state.first.pop() {
                    run(r);
                    ran += 1;
                    any = true;
                }
                if let Ok(r) = state.second.pop() {
                    run(r);
                    ran += 1;
                    any = true;
                }
                if !any {
                    break;
                }
            }
            if ran >= ROUND {
                // More may be ready: let `block_on` poll the reactor
                // without blocking, then go on.
                future::yield_now().await;
                continue;
            }
            // Both queues were empty: wait for a task (`block_on` waits in
            // the reactor meanwhile). The listener lives in this future,
            // not on the heap: a thread goes idle about twice per
            // keep-alive request.
            event_listener::listener!(state.ready => listener);
            if !state.first.is_empty() || !state.second.is_empty() {
                continue;
            }
            listener.await;
        }
    }
}

/// Runs one task, marking this thread as inside it.
fn run(runnable: Runnable) {
    struct Out;
    impl Drop for Out {
        fn drop(&mut self) {
            IN_TASK.with(|t| t.set(false));
        }
    }
    IN_TASK.with(|t| t.set(true));
    let _out = Out;
    runnable.run();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn tasks_run_and_their_results_come_back() {
        let ex = Executor::new();
        let got = smol::block_on(ex.run(async {
            let tasks: Vec<_> = (0..100u32)
                .map(|i| ex.spawn(async move { i * 2 }))
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await;
            }
            sum
        }));
        assert_eq!(got, (0..100u32).map(|i| i * 2).sum::<u32>());
    }

    #[test]
    fn new_work_goes_ahead_of_all_but_one_task_woken_task() {
        // A task wakes three others (as a post wakes its room's streams),
        // then new work arrives (the next post): it runs after the first
        // woken one, before the other two.
        let ex = Arc::new(Executor::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        smol::block_on(ex.run(async {
            let (tx, rx) = async_channel::bounded::<()>(3);
            let woken: Vec<_> = ["woken 1", "woken 2", "woken 3"]
                .into_iter()
                .map(|name| {
                    let (rx, o) = (rx.clone(), order.clone());
                    ex.spawn(async move {
                        rx.recv().await.unwrap();
                        o.lock().unwrap().push(name);
                    })
                })
                .collect();
            // `run` polls this future, then runs the tasks: after this
            // yield each of them has run once and waits.
            future::yield_now().await;
            let (o, ex2) = (order.clone(), ex.clone());
            let waker = ex.spawn(async move {
                for _ in 0..3 {
                    tx.send(()).await.unwrap();
                }
                o.lock().unwrap().push("waker");
                let o = o.clone();
                ex2.spawn(async move { o.lock().unwrap().push("new") })
                    .detach();
            });
            waker.await;
            for w in woken {
                w.await;
            }
        }));
        let order = order.lock().unwrap();
        assert_eq!(order[..], ["waker", "woken 1", "new", "woken 2", "woken 3"]);
    }
}

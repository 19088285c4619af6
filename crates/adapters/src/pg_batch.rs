//! Group commit: writes that many requests make at once are gathered and done in one
//! statement, and each caller is answered only once that statement committed.
//!
//! Every guarded request bumps the same few rate-counter rows (its key's, its
//! organisation's) and writes one audit row. Done one request at a time, those statements
//! queue on the counter rows' locks and cost a round trip each: in the checkout benchmark
//! they were a third of PostgreSQL's time. A [`GroupCommit`] runs on its own thread: it
//! takes the first waiting job, then every job queued behind it (up to a cap), and runs them
//! as one batch. Nothing waits for a batch to fill: when one job is waiting, a batch is one
//! job, so an idle gateway answers as fast as before. A caller's guarantee is unchanged: its
//! answer comes after the commit that holds its write, or it gets the error that batch got.

use std::sync::mpsc;
use std::thread;

use diesel::PgConnection;
use sacp_ports::RepositoryError;
use tokio::sync::oneshot;

use crate::pg::{PgPool, with_connection};

/// Most jobs in one batch: bounds a statement's size and the time its row locks are held.
pub(crate) const MAX_BATCH: usize = 512;

/// Does one batch on one connection, returning one answer per job, in order.
pub(crate) type BatchWork<J, O> = fn(&mut PgConnection, &[J]) -> Result<Vec<O>, RepositoryError>;

type Reply<O> = oneshot::Sender<Result<O, RepositoryError>>;

/// A queue of jobs served in batches by one thread (see the module documentation).
pub(crate) struct GroupCommit<J, O> {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<(J, Reply<O>)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<J, O> Drop for GroupCommit<J, O> {
    /// Closes the queue and waits for the thread to finish its last batch and close its
    /// connections. A connection closed while the process exits races the TLS library's
    /// exit-time cleanup (a crash at exit), so no batch thread may outlive its storage.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<J: Send + 'static, O: Send + 'static> GroupCommit<J, O> {
    /// Starts the thread `name` that runs batches of jobs with `work` on connections of
    /// `pool`. The thread ends when the last handle to this queue is dropped.
    pub(crate) fn start(name: &str, pool: PgPool, work: BatchWork<J, O>) -> GroupCommit<J, O> {
        let (jobs, queue) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || serve(&queue, &pool, work));
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(error) => {
                // Without the thread every job is answered `Unavailable` (its reply is
                // dropped): the gateway reports unready storage rather than failing to start.
                tracing::error!(%error, "could not start the {name} batch thread");
                None
            }
        };
        GroupCommit {
            jobs: Some(jobs),
            thread,
        }
    }

    /// Runs `job` in the next batch and returns its answer once that batch committed.
    pub(crate) async fn submit(&self, job: J) -> Result<O, RepositoryError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send((job, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The error for a job answered in another kind than it asked (a bug: a queue of several
/// kinds of jobs answers each in kind); `queue` names the queue.
pub(crate) fn mismatched(queue: &str) -> RepositoryError {
    RepositoryError::Corrupt(format!("a {queue} job got an answer of another kind"))
}

fn stopped() -> RepositoryError {
    RepositoryError::Unavailable("storage batch worker stopped".into())
}

fn serve<J, O>(queue: &mpsc::Receiver<(J, Reply<O>)>, pool: &PgPool, work: BatchWork<J, O>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<J>, Vec<Reply<O>>) = batch.into_iter().unzip();
        match with_connection(pool, |conn| work(conn, &jobs)) {
            Ok(answers) if answers.len() == replies.len() => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away needs no answer.
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let error = RepositoryError::Corrupt(format!(
                    "a batch of {} got {} answers",
                    replies.len(),
                    answers.len()
                ));
                answer_all(replies, &error);
            }
            Err(error) => answer_all(replies, &error),
        }
    }
}

fn answer_all<O>(replies: Vec<Reply<O>>, error: &RepositoryError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

//! Group commit: writes that many requests make at once are gathered and done in one
//! statement, and each caller is answered only once that statement committed.
//!
//! Every guarded request bumps the same few rate-counter rows (its key's, its
//! organisation's) and writes one audit row. Done one request at a time, those statements
//! queue on the counter rows' locks and cost a round trip each: in the checkout benchmark
//! they were a third of PostgreSQL's time. A [`GroupCommit`] is one task: it takes the
//! first waiting job, then every job queued behind it (up to a cap), and runs them as one
//! batch. Nothing waits for a batch to fill: when one job is waiting, a batch is one
//! job, so an idle gateway answers as fast as before. A caller's guarantee is unchanged: its
//! answer comes after the commit that holds its write, or it gets the error that batch got.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use sacp_ports::RepositoryError;
use tokio::sync::{mpsc, oneshot};

use crate::pg_pool::{Pools, check_out};

/// Most jobs in one batch: bounds a statement's size and the time its row locks are held.
pub(crate) const MAX_BATCH: usize = 512;

/// The work of one batch, answering one answer per job, in order.
pub(crate) type Batch<'c, O> =
    Pin<Box<dyn Future<Output = Result<Vec<O>, RepositoryError>> + Send + 'c>>;

/// Does one batch on one connection.
pub(crate) type BatchWork<J, O> = for<'c> fn(&'c mut AsyncPgConnection, &'c [J]) -> Batch<'c, O>;

type Reply<O> = oneshot::Sender<Result<O, RepositoryError>>;

/// A queue of jobs served in batches by one task (see the module documentation).
pub(crate) struct GroupCommit<J, O> {
    jobs: mpsc::UnboundedSender<(J, Reply<O>)>,
}

impl<J: Send + 'static, O: Send + 'static> GroupCommit<J, O> {
    /// Starts the task `name` that runs batches of jobs with `work` on connections of
    /// `pools` (its thread's pool, waiting at most `timeout` for one), on the current tokio runtime. The task
    /// ends when the last handle to this queue is dropped.
    pub(crate) fn start(
        name: &'static str,
        pools: Arc<Pools>,
        timeout: Duration,
        work: BatchWork<J, O>,
    ) -> GroupCommit<J, O> {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(serve(name, queue, pools, timeout, work));
        GroupCommit { jobs }
    }

    /// Runs `job` in the next batch and returns its answer once that batch committed.
    pub(crate) async fn submit(&self, job: J) -> Result<O, RepositoryError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((job, reply)).map_err(|_| stopped())?;
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

async fn serve<J, O>(
    name: &'static str,
    mut queue: mpsc::UnboundedReceiver<(J, Reply<O>)>,
    pools: Arc<Pools>,
    timeout: Duration,
    work: BatchWork<J, O>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (jobs, replies): (Vec<J>, Vec<Reply<O>>) = batch.drain(..).unzip();
        let answers = match check_out(&pools, timeout).await {
            Ok(mut conn) => work(&mut conn, &jobs).await,
            Err(error) => Err(error),
        };
        match answers {
            Ok(answers) if answers.len() == replies.len() => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away needs no answer.
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let error = RepositoryError::Corrupt(format!(
                    "a {name} batch of {} got {} answers",
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

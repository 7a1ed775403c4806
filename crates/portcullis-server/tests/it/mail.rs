//! The outbox's sender against real transports: `.eml` files in a folder (the default),
//! and a real SMTP server on loopback (Python's aiosmtpd, which `.ci/run` installs),
//! one that accepts, one that refuses for good and one that is down. On SQLite and
//! PostgreSQL. Messages are queued through the store here; the flows that queue mail
//! come with verification and password reset.

use std::time::{Duration, Instant};

use portcullis_store::{MailQueue, NewMail};

use crate::support::{TestServer, config, on_each_store};

fn mail(n: u32, to: &str) -> NewMail {
    NewMail {
        message_id: format!(
            "test-{n}-{}@portcullis.test",
            portcullis::jwt::random_id().unwrap()
        ),
        recipient: to.to_owned(),
        subject: format!("Message {n}"),
        text_body: format!("Plain text {n}: https://auth.example/verify#t"),
        html_body: format!("<p>HTML {n}</p>"),
    }
}

/// Waits (up to 10 s) until the outbox says `want`.
async fn outbox_reaches(store: &dyn portcullis_store::Store, want: MailQueue) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = store.mail_queue().await.unwrap();
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "outbox {now:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_each_store! {
    async fn without_smtp_mail_is_written_to_a_private_folder(url, dir) {
        let folder = tempfile::tempdir().unwrap();
        let mail_dir = folder.path().join("outbox");
        let mut c = config(&url);
        c.mail.folder = Some(mail_dir.clone());
        let server = TestServer::start(c).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
        let queued = mail(1, "ana@example.com");
        store.enqueue_mail(&queued, now).await.unwrap();
        outbox_reaches(store.as_ref(), MailQueue { waiting: 0, sent: 1, failed: 0 }).await;
        let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let text = std::fs::read_to_string(&files[0]).unwrap();
        for expected in [
            format!("Message-ID: <{}>", queued.message_id),
            "To: ana@example.com".to_owned(),
            "Subject: Message 1".to_owned(),
            "Plain text 1".to_owned(),
            "<p>HTML 1</p>".to_owned(),
            "From: Portcullis <noreply@".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected:?} missing in\n{text}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(&mail_dir), mode(&files[0])), (0o700, 0o600));
        }
        // A recipient the transport cannot take is given up on at once, with its reason.
        store.enqueue_mail(&mail(2, "not an address"), now).await.unwrap();
        outbox_reaches(store.as_ref(), MailQueue { waiting: 0, sent: 1, failed: 1 }).await;
        server.stop().await;
    }
}

/// A message's attempts, last error and next attempt, as the outbox table has them.
async fn outbox_row(url: &str, message_id: &str) -> (i64, Option<String>, i64) {
    let sql = "SELECT attempts, last_error, next_attempt_at FROM outbox WHERE message_id = $1";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let row = sqlx::query_as(sql)
            .bind(message_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql)
            .bind(message_id)
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

/// A Python able to run aiosmtpd: `PORTCULLIS_TEST_SMTPD_PYTHON`, or `python3` if it
/// imports aiosmtpd. `None` skips, unless `PORTCULLIS_REQUIRE_SMTP` is set (CI).
pub(crate) fn smtpd_python() -> Option<String> {
    let python = std::env::var("PORTCULLIS_TEST_SMTPD_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_SMTP").is_none(),
        "PORTCULLIS_REQUIRE_SMTP is set but {python} cannot import aiosmtpd"
    );
    eprintln!("skipped: no Python with aiosmtpd (set PORTCULLIS_TEST_SMTPD_PYTHON)");
    None
}

/// An aiosmtpd server on a free loopback port, delivering into a Maildir in `dir`, or
/// refusing every recipient with 550 when `refuse`; killed when dropped.
pub(crate) struct Smtpd {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Smtpd {
    pub(crate) fn start(python: &str, dir: &std::path::Path, refuse: bool) -> Smtpd {
        Smtpd::run(
            python,
            dir,
            if refuse {
                Handler::Refuse
            } else {
                Handler::Accept
            },
        )
    }

    /// One that, on each message's DATA, writes `<dir>/data-started`, waits `seconds`,
    /// then delivers into the Maildir: a slow server to die in front of.
    pub(crate) fn start_slow(python: &str, dir: &std::path::Path) -> Smtpd {
        Smtpd::run(python, dir, Handler::Slow)
    }

    /// The messages delivered into its Maildir so far, as text, in the order they
    /// arrived (by modification time: Maildir names do not sort).
    pub(crate) fn delivered(dir: &std::path::Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir.join("maildir").join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
            .map(|e| {
                let path = e.unwrap().path();
                (std::fs::metadata(&path).unwrap().modified().unwrap(), path)
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// An accepting one on `port` (a server that comes back where it was).
    pub(crate) fn start_on(python: &str, dir: &std::path::Path, port: u16) -> Smtpd {
        Smtpd::run_on(python, dir, Handler::Accept, port)
    }

    fn run(python: &str, dir: &std::path::Path, handler: Handler) -> Smtpd {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Smtpd::run_on(python, dir, handler, port)
    }

    fn run_on(python: &str, dir: &std::path::Path, handler: Handler, port: u16) -> Smtpd {
        let handlers = dir.join("handlers");
        std::fs::create_dir_all(&handlers).unwrap();
        std::fs::write(
            handlers.join("refusing.py"),
            "class Refuse550:\n    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        return '550 5.1.1 No such user here'\n",
        )
        .unwrap();
        std::fs::write(
            handlers.join("slow.py"),
            "import asyncio, pathlib\nfrom aiosmtpd.handlers import Mailbox\nclass Slow(Mailbox):\n    def __init__(self, folder):\n        super().__init__(str(pathlib.Path(folder) / 'maildir'))\n        self.folder = pathlib.Path(folder)\n    async def handle_DATA(self, server, session, envelope):\n        (self.folder / 'data-started').touch()\n        await asyncio.sleep(3)\n        return await super().handle_DATA(server, session, envelope)\n",
        )
        .unwrap();
        let mut cmd = std::process::Command::new(python);
        cmd.env("PYTHONPATH", &handlers).args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
        ]);
        match handler {
            Handler::Refuse => {
                cmd.arg("refusing.Refuse550");
            }
            Handler::Accept => {
                cmd.arg("aiosmtpd.handlers.Mailbox")
                    .arg(dir.join("maildir"));
            }
            Handler::Slow => {
                cmd.arg("slow.Slow").arg(dir);
            }
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtpd { child, port }
    }
}

enum Handler {
    Accept,
    Refuse,
    Slow,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

on_each_store! {
    async fn mail_goes_through_a_real_smtp_server_and_refusals_are_kept(url, dir) {
        let Some(python) = smtpd_python() else { return };
        let work = tempfile::tempdir().unwrap();
        let accepting = Smtpd::start(&python, work.path(), false);
        let mut c = config(&url);
        c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{}", accepting.port));
        c.mail.from = "Portcullis Test <auth@portcullis.test>".into();
        let server = TestServer::start(c).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
        let queued = mail(1, "bo@example.com");
        store.enqueue_mail(&queued, now).await.unwrap();
        outbox_reaches(store.as_ref(), MailQueue { waiting: 0, sent: 1, failed: 0 }).await;
        let new = work.path().join("maildir").join("new");
        let received: Vec<_> = std::fs::read_dir(&new).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(received.len(), 1, "one delivery: {received:?}");
        let text = std::fs::read_to_string(&received[0]).unwrap();
        assert!(text.contains(&format!("Message-ID: <{}>", queued.message_id)), "{text}");
        assert!(text.contains("X-RcptTo: bo@example.com"), "{text}");
        assert!(text.contains("From: \"Portcullis Test\" <auth@portcullis.test>"), "{text}");
        let dir = server.stop().await;

        // A server that refuses the recipient for good (550): given up on, not retried.
        let refusing = Smtpd::start(&python, &work.path().join("refusing"), true);
        let mut c = config(&url);
        c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{}", refusing.port));
        let server = TestServer::start(c).await.keep_dir(dir);
        store.enqueue_mail(&mail(2, "nobody@example.com"), now).await.unwrap();
        outbox_reaches(store.as_ref(), MailQueue { waiting: 0, sent: 1, failed: 1 }).await;
        let dir = server.stop().await;

        // A server that is down: kept for a retry, not lost, not given up on.
        drop(refusing);
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut c = config(&url);
        c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{down}"));
        let server = TestServer::start(c).await.keep_dir(dir);
        let third = mail(3, "cy@example.com");
        store.enqueue_mail(&third, now).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (attempts, error, retry_at) = loop {
            let row = outbox_row(&url, &third.message_id).await;
            if row.1.is_some() {
                break row;
            }
            assert!(Instant::now() < deadline, "never tried");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Tried once, the reason kept, waiting for its retry about 30 s later.
        assert_eq!(attempts, 1);
        assert!(retry_at >= now + 29, "{retry_at} vs {now}");
        assert!(error.unwrap().to_lowercase().contains("connect"), "the reason names the failure");
        assert_eq!(store.mail_queue().await.unwrap(), MailQueue { waiting: 1, sent: 1, failed: 1 });
        server.stop().await;
    }
}

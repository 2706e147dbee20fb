//! Stream directories: `<root>/reaktor-<pid>/`, which process owns one, whether it still
//! runs, and the removal of directories left by processes that are gone (`kill -9`, a crash):
//! each holds the stream files of every ring (tens of MB in `/dev/shm`), which nothing else
//! would ever free.
//!
//! A running reaktor writes an `owner` file into its directory: its pid, its start time in
//! clock ticks since boot (`/proc/<pid>/stat`, field 22), the boot id and its pid namespace.
//! The directory's process runs if `/proc/<pid>` exists, is not a zombie and started at that
//! time: a pid reused by another process has another start time. A directory is only removed
//! when its process is gone for certain, it is a real directory of our user, and everything in
//! it is a reaktor file (the owner and stats files, stream files whose header names that pid
//! as their writer). A directory in another pid namespace (a shared `/dev/shm` between
//! containers) cannot be judged from here and is left alone.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use streams::StreamFileHeader;

use crate::stats::STATS_FILE;

/// Name of the owner file inside a stream directory.
pub const OWNER_FILE: &str = "owner";
const OWNER_MAGIC: &str = "reaktor-owner 1";

/// Where stream directories go by default: `/dev/shm` where it exists, else the temp dir.
pub fn default_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// The stream directory of reaktor `pid` under `root` (default: [`default_root`]).
pub fn dir_of(pid: u32, root: Option<&Path>) -> PathBuf {
    root.map(Path::to_owned)
        .unwrap_or_else(default_root)
        .join(format!("reaktor-{pid}"))
}

/// The pid in a stream directory's name `reaktor-<pid>`.
pub fn pid_of(dir: &Path) -> Option<u32> {
    let digits = dir.file_name()?.to_str()?.strip_prefix("reaktor-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&pid| pid > 0)
}

/// Who made a stream directory, precisely enough to tell it from a later process with the
/// same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    pub pid: u32,
    /// Start time of the process in clock ticks since boot.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `/proc/self/ns/pid`, e.g. `pid:[4026531836]`.
    pub pid_ns: String,
}

impl OwnerRecord {
    /// This process.
    pub fn current() -> io::Result<OwnerRecord> {
        let pid = std::process::id();
        let start_ticks = process_info(pid)?
            .ok_or_else(|| io::Error::other("/proc/self/stat is missing"))?
            .start_ticks;
        Ok(OwnerRecord {
            pid,
            start_ticks,
            boot_id: boot_id()?,
            pid_ns: pid_namespace()?,
        })
    }

    pub fn to_text(&self) -> String {
        format!(
            "{OWNER_MAGIC}\npid {}\nstart_ticks {}\nboot_id {}\npid_ns {}\n",
            self.pid, self.start_ticks, self.boot_id, self.pid_ns
        )
    }

    pub fn parse(text: &str) -> Result<OwnerRecord, String> {
        let mut lines = text.lines();
        if lines.next() != Some(OWNER_MAGIC) {
            return Err(format!(
                "not a reaktor owner file (expected `{OWNER_MAGIC}`)"
            ));
        }
        let (mut pid, mut start_ticks, mut boot_id, mut pid_ns) = (None, None, None, None);
        for line in lines {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| format!("bad owner line `{line}`"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad number in `{line}`"))
            };
            match key {
                "pid" => pid = Some(u32::try_from(number()?).map_err(|e| e.to_string())?),
                "start_ticks" => start_ticks = Some(number()?),
                "boot_id" => boot_id = Some(value.to_owned()),
                "pid_ns" => pid_ns = Some(value.to_owned()),
                _ => {}
            }
        }
        match (pid, start_ticks, boot_id, pid_ns) {
            (Some(pid), Some(start_ticks), Some(boot_id), Some(pid_ns)) => Ok(OwnerRecord {
                pid,
                start_ticks,
                boot_id,
                pid_ns,
            }),
            _ => Err("owner file lacks pid, start_ticks, boot_id or pid_ns".into()),
        }
    }

    /// Writes `<dir>/owner` (a temporary file, then a rename: never seen half written).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let temporary = dir.join(format!(".{OWNER_FILE}.tmp"));
        std::fs::write(&temporary, self.to_text())?;
        std::fs::rename(&temporary, dir.join(OWNER_FILE))
    }

    /// `<dir>/owner`, if there is one.
    pub fn read(dir: &Path) -> io::Result<Option<OwnerRecord>> {
        match std::fs::read_to_string(dir.join(OWNER_FILE)) {
            Ok(text) => OwnerRecord::parse(&text)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    pub start_ticks: u64,
    /// Exited, not yet reaped by its parent (state `Z` or `X`).
    pub zombie: bool,
}

/// `/proc/<pid>/stat` of a process, or `None` if there is no such process.
pub fn process_info(pid: u32) -> io::Result<Option<ProcessInfo>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse_stat(&text)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad /proc/{pid}/stat")))
}

/// `pid (comm) state ppid ... starttime ...`: the command may hold spaces and parentheses,
/// so fields are counted from the last `)`; the state is field 3, the start time field 22.
fn parse_stat(text: &str) -> Option<ProcessInfo> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcessInfo {
        start_ticks: fields.get(19)?.parse().ok()?,
        zombie: matches!(*fields.first()?, "Z" | "X"),
    })
}

fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

fn pid_namespace() -> io::Result<String> {
    Ok(std::fs::read_link("/proc/self/ns/pid")?
        .to_string_lossy()
        .into_owned())
}

/// Whether the process of a stream directory runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Gone for certain, and why we know.
    Gone(String),
    /// Cannot be told from here (another pid namespace, unreadable files): treat as running.
    Unknown(String),
}

/// Decides [`Liveness`] from what is known (sans-I/O): the pid in the directory's name, its
/// owner record (`None`: a directory without one), `/proc/<pid>/stat` (`None`: no such
/// process) and this process's own record (for the boot id and pid namespace).
pub fn judge(
    pid: u32,
    owner: Option<&OwnerRecord>,
    process: Option<ProcessInfo>,
    me: &OwnerRecord,
) -> Liveness {
    if let Some(owner) = owner {
        if owner.pid != pid {
            return Liveness::Unknown(format!("its owner file names pid {}", owner.pid));
        }
        if owner.boot_id != me.boot_id {
            return Liveness::Gone("it ran before the last boot".into());
        }
        if owner.pid_ns != me.pid_ns {
            return Liveness::Unknown(format!("it runs in pid namespace {}", owner.pid_ns));
        }
    }
    match (process, owner) {
        (None, _) => Liveness::Gone(format!("no process {pid}")),
        (Some(p), _) if p.zombie => Liveness::Gone(format!("process {pid} has exited")),
        (Some(p), Some(owner)) if p.start_ticks != owner.start_ticks => {
            Liveness::Gone(format!("pid {pid} now belongs to another process"))
        }
        (Some(_), _) => Liveness::Running,
    }
}

/// Whether the reaktor whose stream directory is `dir` runs, as far as this process can tell.
pub fn liveness(dir: &Path) -> Liveness {
    let known = OwnerRecord::current().and_then(|me| Ok((me, OwnerRecord::read(dir)?)));
    let (me, owner) = match known {
        Ok(known) => known,
        Err(e) => return Liveness::Unknown(e.to_string()),
    };
    // A directory given by path may be named otherwise: then its owner file knows the pid.
    let Some(pid) = pid_of(dir).or(owner.as_ref().map(|o| o.pid)) else {
        return Liveness::Unknown(format!(
            "{} is not named reaktor-<pid> and has no owner file",
            dir.display()
        ));
    };
    match process_info(pid) {
        Ok(process) => judge(pid, owner.as_ref(), process, &me),
        Err(e) => Liveness::Unknown(e.to_string()),
    }
}

/// Makes way for this process's stream directory `dir`: one that exists was left by an
/// earlier process with this pid, which is gone; it is removed if it holds only reaktor files.
pub fn clear_own(dir: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    let pid = std::process::id();
    let why = if meta.is_dir() {
        foreign_entry(dir, pid)?
    } else {
        Some("it is not a directory".into())
    };
    if let Some(why) = why {
        return Err(io::Error::other(format!(
            "{} exists and is not a reaktor's stream directory ({why}); move it away or use \
             another stream directory",
            dir.display()
        )));
    }
    let parked = dir.with_file_name(format!(".reaktor-{pid}.removing-{pid}"));
    std::fs::rename(dir, &parked)?;
    std::fs::remove_dir_all(&parked)
}

/// Why the directory of `pid` is not a reaktor's, if it is not: every entry must be a regular
/// file, and each the owner file, the stats file (or their temporaries) or a stream file
/// written by `pid`.
fn foreign_entry(dir: &Path, pid: u32) -> io::Result<Option<String>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !entry.file_type()?.is_file() {
            return Ok(Some(format!("{} is not a regular file", path.display())));
        }
        let tmp_of = |file: &str| name == format!(".{file}.tmp");
        if name == OWNER_FILE || name == STATS_FILE || tmp_of(OWNER_FILE) || tmp_of(STATS_FILE) {
            continue;
        }
        match StreamFileHeader::read(&path) {
            Ok(header) if header.writer_pid == pid => {}
            Ok(header) => {
                return Ok(Some(format!(
                    "{} was written by pid {}",
                    path.display(),
                    header.writer_pid
                )))
            }
            Err(e) => return Ok(Some(e.to_string())),
        }
    }
    Ok(None)
}

/// Bytes the files of `dir` occupy.
fn occupied(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// A stream directory removed by [`remove_dead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub dir: PathBuf,
    pub pid: u32,
    /// Why its process is known to be gone.
    pub reason: String,
    pub bytes: u64,
}

/// What [`remove_dead`] did under a stream root.
#[derive(Debug, Default)]
pub struct Sweep {
    pub removed: Vec<Removed>,
    /// Directories left in place although their process may be gone, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

enum Verdict {
    Removed(Removed),
    Running,
    Left(String),
}

/// Removes the stream directories under `root` whose reaktor is gone, except `own` (this
/// process's, which fixes the user they must belong to). Directories that are not certainly a
/// dead reaktor's are left alone (in [`Sweep::skipped`] with the reason).
pub fn remove_dead(root: &Path, own: &Path) -> io::Result<Sweep> {
    let me = OwnerRecord::current()?;
    let uid = std::fs::metadata(own)?.uid();
    let mut sweep = Sweep::default();
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let dir = entry.path();
        let Some(pid) = pid_of(&dir) else { continue };
        if dir == own {
            continue;
        }
        match remove_if_dead(&dir, pid, uid, &me) {
            Ok(Verdict::Removed(r)) => sweep.removed.push(r),
            Ok(Verdict::Running) => {}
            Ok(Verdict::Left(why)) => sweep.skipped.push((dir, why)),
            Err(e) => sweep.skipped.push((dir, e.to_string())),
        }
    }
    Ok(sweep)
}

fn remove_if_dead(dir: &Path, pid: u32, uid: u32, me: &OwnerRecord) -> io::Result<Verdict> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid {
        return Ok(Verdict::Left("not a directory of this user".into()));
    }
    let judge_now = |dir: &Path| -> io::Result<Liveness> {
        Ok(judge(
            pid,
            OwnerRecord::read(dir)?.as_ref(),
            process_info(pid)?,
            me,
        ))
    };
    let reason = match judge_now(dir)? {
        Liveness::Gone(reason) => reason,
        Liveness::Running => return Ok(Verdict::Running),
        Liveness::Unknown(why) => return Ok(Verdict::Left(why)),
    };
    if let Some(why) = foreign_entry(dir, pid)? {
        return Ok(Verdict::Left(why));
    }
    // Out of the way under a name no reaktor uses, then judged again: a process that took the
    // pid and its directory name between the two looks (pid reuse) gets its directory back.
    let parked = dir.with_file_name(format!(".reaktor-{pid}.removing-{}", me.pid));
    std::fs::rename(dir, &parked)?;
    if !matches!(judge_now(&parked)?, Liveness::Gone(_)) {
        std::fs::rename(&parked, dir)?;
        return Ok(Verdict::Running);
    }
    let bytes = occupied(&parked);
    std::fs::remove_dir_all(&parked)?;
    Ok(Verdict::Removed(Removed {
        dir: dir.to_owned(),
        pid,
        reason,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> OwnerRecord {
        OwnerRecord {
            pid: 10,
            start_ticks: 500,
            boot_id: "boot-a".into(),
            pid_ns: "pid:[1]".into(),
        }
    }

    fn owner(pid: u32, start_ticks: u64) -> OwnerRecord {
        OwnerRecord {
            pid,
            start_ticks,
            ..me()
        }
    }

    fn running(start_ticks: u64) -> Option<ProcessInfo> {
        Some(ProcessInfo {
            start_ticks,
            zombie: false,
        })
    }

    #[test]
    fn names_are_reaktor_dash_pid_and_nothing_else() {
        assert_eq!(pid_of(Path::new("/dev/shm/reaktor-42")), Some(42));
        for name in [
            "reaktor-",
            "reaktor-0",
            "reaktor-4x",
            "reaktor--1",
            "xreaktor-4",
            "reaktor-99999999999",
        ] {
            assert_eq!(pid_of(&Path::new("/dev/shm").join(name)), None, "{name}");
        }
        assert_eq!(dir_of(7, Some(Path::new("/r"))), Path::new("/r/reaktor-7"));
    }

    #[test]
    fn the_owner_record_round_trips_and_bad_files_are_errors() {
        let record = owner(123, 456);
        assert_eq!(OwnerRecord::parse(&record.to_text()), Ok(record));
        assert!(OwnerRecord::parse("something else\npid 1\n").is_err());
        assert!(OwnerRecord::parse("reaktor-owner 1\npid 1\n").is_err());
        assert!(OwnerRecord::parse("reaktor-owner 1\npid x\nstart_ticks 1\n").is_err());
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line = "77 (a (b) c) S 1 77 77 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 98765 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcessInfo {
                start_ticks: 98765,
                zombie: false
            })
        );
        let zombie = "77 (reaktor) Z 1 77 77 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 98765 0 0";
        assert!(parse_stat(zombie).unwrap().zombie);
        assert_eq!(parse_stat("77 (reaktor) S 1"), None);
    }

    #[test]
    fn this_process_is_running_by_its_own_record() {
        let me = OwnerRecord::current().unwrap();
        let info = process_info(me.pid).unwrap();
        assert_eq!(judge(me.pid, Some(&me), info, &me), Liveness::Running);
    }

    #[test]
    fn a_process_is_gone_when_absent_exited_reused_or_from_an_earlier_boot() {
        let me = me();
        assert!(matches!(
            judge(20, Some(&owner(20, 9)), None, &me),
            Liveness::Gone(_)
        ));
        assert!(matches!(judge(20, None, None, &me), Liveness::Gone(_)));
        let zombie = Some(ProcessInfo {
            start_ticks: 9,
            zombie: true,
        });
        assert!(matches!(
            judge(20, Some(&owner(20, 9)), zombie, &me),
            Liveness::Gone(_)
        ));
        // The pid belongs to a process that started later: reused.
        assert!(matches!(
            judge(20, Some(&owner(20, 9)), running(12), &me),
            Liveness::Gone(r) if r.contains("another process")
        ));
        let earlier_boot = OwnerRecord {
            boot_id: "boot-b".into(),
            ..owner(20, 9)
        };
        assert!(matches!(
            judge(20, Some(&earlier_boot), running(9), &me),
            Liveness::Gone(_)
        ));
    }

    #[test]
    fn a_live_process_or_one_that_cannot_be_judged_is_never_gone() {
        let me = me();
        assert_eq!(
            judge(20, Some(&owner(20, 9)), running(9), &me),
            Liveness::Running
        );
        // Without an owner file (an older reaktor) a live pid counts as running.
        assert_eq!(judge(20, None, running(9), &me), Liveness::Running);
        let elsewhere = OwnerRecord {
            pid_ns: "pid:[2]".into(),
            ..owner(20, 9)
        };
        assert!(matches!(
            judge(20, Some(&elsewhere), None, &me),
            Liveness::Unknown(_)
        ));
        assert!(matches!(
            judge(20, Some(&owner(21, 9)), None, &me),
            Liveness::Unknown(_)
        ));
    }

    /// A stream directory under `root` as reaktor `pid` would leave it: owner file (if
    /// given), stats file and one stream file whose header names `pid`.
    fn leave_dir(root: &Path, pid: u32, owner: Option<&OwnerRecord>) -> PathBuf {
        use std::os::unix::fs::FileExt;
        let dir = dir_of(pid, Some(root));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(owner) = owner {
            owner.write(&dir).unwrap();
        }
        std::fs::write(dir.join(STATS_FILE), "reaktor-stats 1\n").unwrap();
        let ring = dir.join("core0.tcp0-core0.http0");
        drop(streams::SharedMapping::create(&ring, 4096, "core0.tcp0 -> core0.http0").unwrap());
        let file = std::fs::OpenOptions::new().write(true).open(&ring).unwrap();
        file.write_at(
            &pid.to_le_bytes(),
            streams::layout::HEADER_WRITER_PID_OFFSET as u64,
        )
        .unwrap();
        dir
    }

    /// A pid no process has now: a child that exited and was reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    struct Sleeper(std::process::Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn root(tag: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("reaktor-streamdir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn only_directories_of_reaktors_that_are_gone_are_removed() {
        let root = root("sweep");
        let me = OwnerRecord::current().unwrap();
        let own = leave_dir(&root, me.pid, Some(&me));
        // Gone: no such process, with and without an owner file.
        let dead = dead_pid();
        let gone = leave_dir(
            &root,
            dead,
            Some(&OwnerRecord {
                pid: dead,
                ..me.clone()
            }),
        );
        let dead_old = dead_pid();
        let gone_without_owner = leave_dir(&root, dead_old, None);
        // Gone: the pid now belongs to a process that started later (pid reuse).
        let sleeper = Sleeper(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        let reused_pid = sleeper.0.id();
        let start = process_info(reused_pid).unwrap().unwrap().start_ticks;
        let reused = leave_dir(
            &root,
            reused_pid,
            Some(&OwnerRecord {
                pid: reused_pid,
                start_ticks: start - 1,
                ..me.clone()
            }),
        );
        // Running: a live process that is the one that wrote the directory.
        let live_keeper = Sleeper(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        let live_pid = live_keeper.0.id();
        let live = leave_dir(
            &root,
            live_pid,
            Some(&OwnerRecord {
                pid: live_pid,
                start_ticks: process_info(live_pid).unwrap().unwrap().start_ticks,
                ..me.clone()
            }),
        );
        // Not ours: a dead pid's directory holding a file that is no reaktor's.
        let dead_foreign = dead_pid();
        let foreign = leave_dir(&root, dead_foreign, None);
        std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
        // Not ours: a stream file written by another pid.
        let dead_mixed = dead_pid();
        let mixed = leave_dir(&root, dead_mixed, None);
        std::fs::copy(
            own.join("core0.tcp0-core0.http0"),
            mixed.join("core1.tcp1-core1.http1"),
        )
        .unwrap();
        // Another pid namespace: cannot be judged.
        let dead_ns = dead_pid();
        let elsewhere = leave_dir(
            &root,
            dead_ns,
            Some(&OwnerRecord {
                pid: dead_ns,
                pid_ns: "pid:[1]".into(),
                ..me.clone()
            }),
        );
        // A symbolic link by the name of a dead reaktor's directory.
        let dead_link = dead_pid();
        let target = root.join("elsewhere");
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir_of(dead_link, Some(&root))).unwrap();

        let Sweep { removed, skipped } = remove_dead(&root, &own).unwrap();
        let mut removed_dirs: Vec<&PathBuf> = removed.iter().map(|r| &r.dir).collect();
        removed_dirs.sort();
        let mut expected = vec![&gone, &gone_without_owner, &reused];
        expected.sort();
        assert_eq!(removed_dirs, expected, "skipped: {skipped:?}");
        assert!(removed.iter().all(|r| r.bytes >= 4096), "{removed:?}");
        for dir in [&gone, &gone_without_owner, &reused] {
            assert!(!dir.exists(), "{}", dir.display());
        }
        for dir in [&own, &live, &foreign, &mixed, &elsewhere] {
            assert!(dir.is_dir(), "{} was removed", dir.display());
        }
        assert!(dir_of(dead_link, Some(&root)).exists() && target.is_dir());
        let skipped_dirs: Vec<&PathBuf> = skipped.iter().map(|(d, _)| d).collect();
        for dir in [&foreign, &mixed, &elsewhere] {
            assert!(skipped_dirs.contains(&dir), "{skipped:?}");
        }
        // Nothing parked under a temporary name is left behind.
        let hidden: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
        drop((sleeper, live_keeper));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_directory_by_this_pid_is_cleared_only_if_it_holds_reaktor_files() {
        let root = root("own");
        let me = OwnerRecord::current().unwrap();
        let own = leave_dir(&root, me.pid, Some(&me));
        clear_own(&own).unwrap();
        assert!(!own.exists());
        clear_own(&own).unwrap();
        let own = leave_dir(&root, me.pid, None);
        std::fs::write(own.join("data.bin"), "not a stream file").unwrap();
        let e = clear_own(&own).unwrap_err();
        assert!(e.to_string().contains("data.bin"), "{e}");
        assert!(own.join("data.bin").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn liveness_of_a_directory_follows_its_process() {
        let root = root("live");
        let me = OwnerRecord::current().unwrap();
        let own = leave_dir(&root, me.pid, Some(&me));
        assert_eq!(liveness(&own), Liveness::Running);
        let dead = dead_pid();
        let gone = leave_dir(&root, dead, Some(&OwnerRecord { pid: dead, ..me }));
        assert!(matches!(liveness(&gone), Liveness::Gone(_)));
        // Under another name, the owner file tells the pid.
        let renamed = root.join("copy");
        std::fs::rename(&gone, &renamed).unwrap();
        assert!(matches!(liveness(&renamed), Liveness::Gone(_)));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! `tinymq user`: adds, removes and lists the users in a data directory.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use tinymq_core::auth::{MAX_PASSWORD_LEN, check_user_name};
use tinymq_core::store::{Store, StoreOp};
use tinymq_net::{DATABASE_FILE, RedbStore, StoreError, UserError, new_user};

use crate::args::{self, Failure, Outcome, UsageError};
use crate::panics::quietly;

const USAGE: &str = "\
Usage: tinymq user add NAME [--password P] [--admin] [--data DIR]
       tinymq user remove NAME [--data DIR]
       tinymq user list [--data DIR]

Manages the users of the broker whose data directory is DIR. Clients that
give a user's name and password use that user's own namespace.

  add      adds a user, or gives an existing one a new password and role;
           the password comes from --password, or else from the first line
           of stdin
  remove   removes a user and every value stored in its namespace
  list     prints each user's name and role (user or admin), tab-separated

Stop the broker first: a running broker holds the database (this command
then fails, naming it), and reads its users only when it starts.

Options:
  --data DIR       the broker's data directory [default: ./data]
  --password P     add: the password (other local users can see command
                   lines; stdin keeps it private)
  --admin          add: the user may read STATS, CLIENTS, TOPICS, POSTERS,
                   STATUS and /metrics when anonymous access is off";

pub fn run(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, USAGE) {
        return Ok(());
    }
    let data: PathBuf = args::opt(&mut args, "--data")?.unwrap_or_else(|| PathBuf::from("./data"));
    let password: Option<String> = args::opt(&mut args, "--password")?;
    let admin = args::switch(&mut args, "--admin");
    let action: Option<String> = args::free(&mut args, "a user command")?;
    let name: Option<String> = args::free(&mut args, "NAME")?;
    args::finish(args)?;
    let Some(action) = action else {
        return Err(UsageError("user needs a command: add, remove or list (try --help)".into()).into());
    };
    let needs_name = |name: Option<String>| {
        let name = name.ok_or_else(|| UsageError(format!("user {action} needs a NAME")))?;
        check_user_name(&name).map_err(|e| UsageError(format!("NAME {name:?}: {e}")))?;
        Ok::<_, UsageError>(name)
    };
    if action != "add" && (password.is_some() || admin) {
        let flag = if admin { "--admin" } else { "--password" };
        return Err(UsageError(format!("{flag}: only with user add")).into());
    }
    match action.as_str() {
        "add" => add(&data, &needs_name(name)?, password, admin),
        "remove" => remove(&data, &needs_name(name)?),
        "list" => match name {
            Some(stray) => Err(UsageError(format!("unexpected argument {stray:?} (try --help)")).into()),
            None => list(&data),
        },
        other => Err(UsageError(format!("unknown user command {other:?}: add, remove or list")).into()),
    }
}

/// Opens the database, which must exist unless `create`.
fn open(data: &Path, create: bool) -> Result<RedbStore, Failure> {
    let path = data.join(DATABASE_FILE);
    if !create && !path.exists() {
        return Err(Failure::run(format!("no database at {} (no users yet, or another --data)", path.display())));
    }
    quietly(|| RedbStore::open(data)).map_err(|error| match error {
        StoreError::InUse(_) => Failure::run(format!("{error}; stop it to manage users")),
        error => Failure::run(error),
    })
}

fn add(data: &Path, name: &str, password: Option<String>, admin: bool) -> Outcome {
    let password = match password {
        Some(password) => {
            check_password(&password).map_err(|e| UsageError(format!("--password: {e}")))?;
            password
        }
        None => read_password(name)?,
    };
    let mut store = open(data, true)?;
    let existed = quietly(|| store.load_users()).map_err(Failure::run)?.iter().any(|user| user.name == name);
    // Takes a moment: users::ITERATIONS rounds of PBKDF2.
    let user = new_user(name, &password, admin).map_err(Failure::run)?;
    let role = user.role();
    store.apply(&[StoreOp::PutUser(user)]).map_err(Failure::run)?;
    if existed {
        println!("replaced user {name}: new password, role {role}");
    } else {
        println!("added user {name} ({role})");
    }
    Ok(())
}

fn remove(data: &Path, name: &str) -> Outcome {
    let mut store = open(data, false)?;
    if !quietly(|| store.load_users()).map_err(Failure::run)?.iter().any(|user| user.name == name) {
        return Err(Failure::run(format!("no user {name:?} in {}", store.path().display())));
    }
    store.apply(&[StoreOp::DeleteUser { name: name.to_owned() }]).map_err(Failure::run)?;
    println!("removed user {name} and the values stored in its namespace");
    Ok(())
}

fn list(data: &Path) -> Outcome {
    let store = open(data, false)?;
    let mut out = std::io::stdout().lock();
    for user in quietly(|| store.load_users()).map_err(Failure::run)? {
        writeln!(out, "{}\t{}", user.name, user.role()).map_err(Failure::run)?;
    }
    Ok(())
}

/// The checks [`new_user`] makes, before any file is touched.
fn check_password(password: &str) -> Result<(), UserError> {
    if password.is_empty() {
        Err(UserError::EmptyPassword)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(UserError::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// The first line of stdin, without its line ending.
fn read_password(name: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {name} (shown as typed): ");
    }
    let mut line = Vec::new();
    // At most one byte over the limit (plus CR LF) is read: enough to tell.
    stdin
        .lock()
        .take(MAX_PASSWORD_LEN as u64 + 3)
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::run(format!("cannot read the password from stdin: {e}")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    let password = String::from_utf8(line).map_err(|_| Failure::run("the password on stdin is not UTF-8 text"))?;
    check_password(&password).map_err(|e| Failure::run(format!("stdin: {e}")))?;
    Ok(password)
}

//! bpfprof: parse the command line, dispatch to a tool, and turn errors into one line and a non-zero exit.
mod bpf;
mod cli;
#[cfg(test)]
mod fuzz;
mod oneliner;
mod probes;
mod render;
mod symbolize;
mod tools;
mod unwind;
mod util;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Profile(args) => args
            .into_config()
            .and_then(|config| tools::profile::run(&config)),
        cli::Command::OffCpu(args) => args
            .into_config(tools::offcpu::WaitMode::OffCpu)
            .and_then(|config| tools::offcpu::run(&config)),
        cli::Command::Wakeup(args) => args
            .into_config(tools::offcpu::WaitMode::Wakeup)
            .and_then(|config| tools::offcpu::run(&config)),
        cli::Command::OffWake(args) => args
            .into_config(tools::offcpu::WaitMode::OffWake)
            .and_then(|config| tools::offcpu::run(&config)),
        cli::Command::Biolatency(args) => args
            .into_config()
            .and_then(|config| tools::biolatency::run(&config)),
        cli::Command::Funccount(args) => args
            .into_config()
            .and_then(|config| tools::funccount::run(&config)),
        cli::Command::Trace(args) => args
            .into_config()
            .and_then(|config| oneliner::runtime::run(&config)),
        cli::Command::Diff(args) => tools::diff::run(&args.into_config()),
        cli::Command::HotCold(args) => args.into_config().and_then(|cfg| tools::hotcold::run(&cfg)),
        cli::Command::Report(args) => tools::report::run(&args.into_config()),
        cli::Command::UnwindTable(args) => unwind::table::show(&args.file, &args.addrs),
        cli::Command::Completions(args) => cli::print_completions(args.shell),
        cli::Command::Manpages(args) => cli::write_manpages(&args.dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the outermost context, then its causes.
            let msg = err
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("bpfprof: {msg}");
            if let Some(log) = bpf::verifier_log_hint(&err) {
                eprintln!("{log}");
            }
            ExitCode::FAILURE
        }
    }
}

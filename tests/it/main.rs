mod common;

mod build;
mod config;
mod contents;
mod docs;
mod hardening_bucket;
mod hardening_install;
mod hardening_push;
mod harness_selftest;
mod hosts_selftest;
mod install;
mod pipelines;
mod progress;
mod promote;
mod push;
mod stalled;

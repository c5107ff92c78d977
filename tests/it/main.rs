mod common;

mod build;
mod config;
mod docs;
mod hardening_bucket;
mod hardening_install;
mod hardening_push;
mod hardening_unpack;
mod harness_selftest;
mod hosts_selftest;
mod install;
mod operator;
mod pipelines;
mod progress;
mod promote;
mod push;
mod stalled;

mod common;

mod build;
mod harness_selftest;
mod hosts_selftest;
mod install;
mod promote;
mod push;

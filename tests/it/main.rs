mod common;

mod build;
mod config;
mod harness_selftest;
mod hosts_selftest;
mod install;
mod promote;
mod push;

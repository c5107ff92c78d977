# Writes a deterministic pseudo-source tree of about `mb` MiB under `root`, for machines
# without a real source tree to benchmark on (bench/build.sh falls back to it).
#   awk -v root=DIR -v mb=300 -f bench/gen-tree.awk
# A fixed seed makes the output the same on every run of one awk implementation. Lines are
# drawn from a small vocabulary so the text compresses like real code (gzip -1 ~5x),
# not like random bytes (1x) or zeros (1000x), which would both make the numbers lie.
BEGIN {
    if (root == "" || mb <= 0) { print "usage: awk -v root=DIR -v mb=N -f gen-tree.awk" > "/dev/stderr"; exit 2 }
    srand(42)
    n = split("fn let mut pub struct impl self return match if else for in while loop use mod " \
              "crate const static enum trait where async await Result Option Some None Ok Err " \
              "String Vec u8 u32 u64 usize i64 bool true false buffer reader writer config " \
              "error value index count len name path file data -> => :: == != && || { } [ ]", w, " ")
    target = mb * 1048576
    total = 0
    for (d = 0; total < target; d++) {
        dir = sprintf("%s/pkg%03d/src", root, d)
        if (system("mkdir -p '" dir "'") != 0) exit 1
        for (f = 0; f < 40 && total < target; f++) {
            file = sprintf("%s/mod%02d.rs", dir, f)
            lines = 100 + int(rand() * 4000)
            for (l = 0; l < lines; l++) {
                # Code repeats itself: 60% of the lines echo one of the last 32, which gives gzip -1 the
                # ratio it gets on real crate sources here (~4.9x).
                if (l > 32 && rand() < 0.6) s = recent[int(rand() * 32)]
                else {
                    s = substr("                ", 1, 4 * int(rand() * 4))
                    k = 2 + int(rand() * 9)
                    for (i = 0; i < k; i++) {
                        s = s w[1 + int(rand() * n)]
                        s = s (rand() < 0.15 ? "(" int(rand() * 1000) ") " : " ")
                    }
                }
                recent[l % 32] = s
                print s ";" > file
                total += length(s) + 2
            }
            close(file)
        }
    }
}

#!/usr/bin/env bash
# Records the prompts of an `arkesel` voice provider (`voice_clips`) with Debian's
# espeak-ng: intro.wav, 0.wav … 9.wav and again.wav, 8 kHz mono 16-bit PCM (a phone
# line's rate). Recorded human prompts are better; they must share one WAV format.
#
#   examples/voice-clips/make-clips.sh DIR [ESPEAK_VOICE] [INTRO] [AGAIN]
#   examples/voice-clips/make-clips.sh /etc/otpd/voice/fr fr "Votre code est" "Je répète"
set -euo pipefail
dir=${1:?usage: make-clips.sh DIR [ESPEAK_VOICE] [INTRO] [AGAIN]}
voice=${2:-en}
intro=${3:-Your verification code is}
again=${4:-Again}
command -v espeak-ng >/dev/null || { echo "needs espeak-ng (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "needs sox (apt-get install sox)" >&2; exit 1; }
mkdir -p "$dir"
say() { # say TEXT FILE: speak slowly, then resample to 8 kHz mono 16-bit
    local tmp
    tmp=$(mktemp --suffix .wav)
    espeak-ng -v "$voice" -s 130 -w "$tmp" "$1"
    sox "$tmp" -r 8000 -c 1 -b 16 "$2"
    rm -f "$tmp"
}
say "$intro" "$dir/intro.wav"
say "$again" "$dir/again.wav"
for d in 0 1 2 3 4 5 6 7 8 9; do
    say "$d" "$dir/$d.wav"
done
echo "wrote $(ls "$dir"/*.wav | wc -l) prompts to $dir"

#!/usr/bin/env bash
# Grade one chapter of the class on Kubernetes, in kubectl's current namespace:
#
#   environment/k8s/grade.sh CHAPTER        e.g. ch01 or ch01_why_optimize
#
# 1. in the instructors' pod (instructor.yaml): the chapter's slug, the folder of verdicts
#    of an earlier round removed, and `nbgrader collect` from the exchange into the course
#    volume (every student's server runs as one uid, so the owner is not cross-checked);
# 2. the Indexed Job llmopt-judge (grading.yaml): each pod judges its shard of the class
#    into /srv/course/verdicts/<chapter>; a shard that fails for good is left to
# 3. the Job llmopt-merge: nbgrader's autograde of the whole class with those verdicts, the
#    one writer of the gradebook; its log, with the class table, is printed at the end.
# Exits non-zero if the merge failed. Never run on a cluster (none was at hand).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 CHAPTER" >&2; exit 2; }
instructor=(kubectl exec deploy/llmopt-instructor --)

# Wait until Job $1 has finished; print Complete or Failed.
finished() {
  local state
  while true; do
    state="$(kubectl get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')"
    case " $state " in
      *" Complete "*) echo Complete; return ;;
      *" Failed "*) echo Failed; return ;;
    esac
    sleep 10
  done
}

chapter="$("${instructor[@]}" python -c 'import sys, course_config; print(course_config.chapter(sys.argv[1]).slug)' "$1")"
"${instructor[@]}" rm -rf "/srv/course/verdicts/$chapter"
"${instructor[@]}" nbgrader collect "$chapter" --update --ExchangeCollect.check_owner=False

kubectl delete job -l app.kubernetes.io/part-of=llmopt-grading --ignore-not-found --wait
kubectl create configmap llmopt-grading --from-literal=chapter="$chapter" --dry-run=client -o yaml \
  | kubectl apply -f -
kubectl apply -f "$here/grading.yaml" -l llmopt/step=judge
echo "judging $chapter: $(finished llmopt-judge)"
kubectl apply -f "$here/grading.yaml" -l llmopt/step=merge
merged="$(finished llmopt-merge)"
kubectl logs job/llmopt-merge
echo "grading $chapter: $merged"
[ "$merged" = Complete ]

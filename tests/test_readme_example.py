"""The README's "Test your workflows" example, verbatim: the test command runs it."""

from polos.testing import local_stack


def test_signup_onboards_the_user():
    with local_stack("workflows") as stack:  # the app, named as for `polos dev --app`
        stack.publish("user/signup", [{"data": {"user_id": "u1", "email": "u1@example.com"}}])
        stack.drain()  # runs the worker until every queue is empty

        (run,) = stack.runs("user-signup-handler")
        assert run["status"] == "completed"
        assert run["result"] == {"status": "onboarded", "user_id": "u1"}
        assert [step["key"] for step in run["steps"]] == ["send_welcome", "setup_account"]


def test_a_crash_never_repeats_a_journaled_step():
    with local_stack("workflows") as stack:
        stack.crash_after_step("send_welcome")  # the first attempt dies right after this step
        stack.publish("user/signup", [{"data": {"user_id": "u2", "email": "u2@example.com"}}])
        stack.drain()

        (run,) = stack.runs("user-signup-handler")
        assert run["status"] == "completed"
        assert run["attempts"] == 2  # SQS delivered the event again...
        assert [step["attempts"] for step in run["steps"]] == [1, 1]  # ...and no step ran twice

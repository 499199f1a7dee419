import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone

from connections.models import Audience, Connection, Membership, Profile, Subscription


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    name = factory.Sequence(lambda n: f"Workspace {n}")
    site_id = factory.Sequence(lambda n: f"site{n:04d}")
    api_key = factory.Sequence(lambda n: f"sk-test-{n:04d}-5f1e9c2b7a")


class AudienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Audience

    audience_id = factory.Sequence(lambda n: 1000 + n)
    name = factory.Sequence(lambda n: f"Audience {n}")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    audience = factory.SubFactory(AudienceFactory)
    connection = factory.SubFactory(ConnectionFactory)


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    customer_id = factory.Sequence(lambda n: f"customer-{n}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = "Ada"
    last_name = "Lovelace"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    profile = factory.SubFactory(ProfileFactory)
    audience = factory.SubFactory(AudienceFactory)
    is_member = True
    changed_at = factory.LazyFunction(timezone.now)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")
    is_staff = True

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if not create:
            return
        if extracted:
            self.groups.set(Group.objects.filter(name__in=extracted))
        # Saves the password set above too: without it a user without groups keeps an empty
        # password in the database, and force_login's session is dropped on the next request.
        self.save()
